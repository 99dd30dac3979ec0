package main

// The lab topology JSON written by lab/topology.py (write_topology). Only the fields vCenter needs.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type Gpu struct {
	PciID        string   `json:"pci_id"`
	Model        string   `json:"model"`
	VendorID     int      `json:"vendor_id"`
	DeviceID     int      `json:"device_id"`
	DeviceName   string   `json:"device_name"`
	NumaNode     int      `json:"numa_node"`
	Architecture string   `json:"architecture"`
	MigCapable   bool     `json:"mig_capable"`
	VgpuProfiles []string `json:"vgpu_profiles"`
	// Optional; when absent the framebuffer is read off the largest vGPU profile name.
	MemoryMB int `json:"memory_mb,omitempty"`
}

type Nic struct {
	PciID      string `json:"pci_id"`
	VendorID   int    `json:"vendor_id"`
	DeviceID   int    `json:"device_id"`
	DeviceName string `json:"device_name"`
	NumaNode   int    `json:"numa_node"`
	Vmnic      string `json:"vmnic"`
	Vmrdma     string `json:"vmrdma"`
}

type Host struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Gpus      []Gpu  `json:"gpus"`
	Nics      []Nic  `json:"nics"`
	NumaNodes int    `json:"numa_nodes"`
	CpuModel  string `json:"cpu_model"`
	MemoryGB  int    `json:"memory_gb"`
	// Optional: the NVIDIA host driver already installed ({"version": ...}); null or absent: none.
	Driver json.RawMessage `json:"driver,omitempty"`
}

func (h Host) hasDriver() bool {
	d := strings.TrimSpace(string(h.Driver))
	return d != "" && d != "null"
}

type VM struct {
	Name       string `json:"name"`
	Host       string `json:"host"`
	Template   bool   `json:"template"`
	GuestID    string `json:"guest_id"`
	NumCpus    int    `json:"num_cpus"`
	MemoryMB   int    `json:"memory_mb"`
	PowerState string `json:"power_state"`
}

type Guest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Persona string `json:"persona"`
}

type Topology struct {
	Datacenter string  `json:"datacenter"`
	Cluster    string  `json:"cluster"`
	Datastore  string  `json:"datastore"`
	Hosts      []Host  `json:"hosts"`
	Vms        []VM    `json:"vms"`
	Guests     []Guest `json:"guests"`
}

func loadTopology(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Topology
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &t, t.validate()
}

// validate rejects a topology vCenter could not represent, naming the offending field.
func (t *Topology) validate() error {
	if t.Datacenter == "" || t.Cluster == "" || t.Datastore == "" {
		return fmt.Errorf("topology: datacenter, cluster and datastore must be set")
	}
	if len(t.Hosts) == 0 {
		return fmt.Errorf("topology: hosts is empty")
	}
	hosts := map[string]bool{}
	for i, h := range t.Hosts {
		if h.Name == "" {
			return fmt.Errorf("topology: hosts[%d].name is empty", i)
		}
		if hosts[h.Name] {
			return fmt.Errorf("topology: duplicate host name %q", h.Name)
		}
		hosts[h.Name] = true
		for j, g := range h.Gpus {
			if _, _, _, err := parsePciID(g.PciID); err != nil {
				return fmt.Errorf("topology: hosts[%d].gpus[%d].pci_id: %w", i, j, err)
			}
		}
		for j, n := range h.Nics {
			if _, _, _, err := parsePciID(n.PciID); err != nil {
				return fmt.Errorf("topology: hosts[%d].nics[%d].pci_id: %w", i, j, err)
			}
		}
	}
	vms := map[string]bool{}
	for i, v := range t.Vms {
		if v.Name == "" || vms[v.Name] {
			return fmt.Errorf("topology: vms[%d].name %q is empty or duplicate", i, v.Name)
		}
		vms[v.Name] = true
		if !hosts[v.Host] {
			return fmt.Errorf("topology: vms[%d] (%s).host %q is not a topology host", i, v.Name, v.Host)
		}
		switch v.PowerState {
		case "", "poweredOff", "poweredOn":
		default:
			return fmt.Errorf("topology: vms[%d] (%s).power_state %q: want poweredOff or poweredOn", i, v.Name, v.PowerState)
		}
	}
	return nil
}

// parsePciID splits "0000:3b:00.0" into bus, slot, function.
func parsePciID(id string) (bus, slot, fn uint8, err error) {
	var seg, b, s, f uint64
	parts := strings.FieldsFunc(id, func(r rune) bool { return r == ':' || r == '.' })
	if len(parts) != 4 {
		return 0, 0, 0, fmt.Errorf("%q is not a PCI address like 0000:3b:00.0", id)
	}
	vals := []*uint64{&seg, &b, &s, &f}
	for i, p := range parts {
		v, e := strconv.ParseUint(p, 16, 16)
		if e != nil {
			return 0, 0, 0, fmt.Errorf("%q is not a PCI address like 0000:3b:00.0", id)
		}
		*vals[i] = v
	}
	if b > 0xff || s > 0x1f || f > 7 {
		return 0, 0, 0, fmt.Errorf("%q is out of range", id)
	}
	return uint8(b), uint8(s), uint8(f), nil
}

var profileFramebuffer = regexp.MustCompile(`-(\d+)[a-z]+$`)

// gpuMemoryKB is the board framebuffer: memory_mb when given, else the largest vGPU profile size
// (the full-board profile, e.g. grid_a100d-80c -> 80 GB).
func gpuMemoryKB(g Gpu) int64 {
	if g.MemoryMB > 0 {
		return int64(g.MemoryMB) * 1024
	}
	best := 0
	for _, p := range g.VgpuProfiles {
		if m := profileFramebuffer.FindStringSubmatch(p); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > best {
				best = n
			}
		}
	}
	return int64(best) * 1024 * 1024
}
