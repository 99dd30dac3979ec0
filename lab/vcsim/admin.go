package main

// /lab/ admin endpoints: how the ESXi-side simulator and the guest personas read and change what
// vCenter shows, so both faces of the lab agree. JSON over the same HTTPS listener, HTTP basic auth.

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...interface{}) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (l *Lab) adminHandler(user, pass string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/lab/health", func(w http.ResponseWriter, r *http.Request) {
		// The pid lets the starter check that it reached its own process, not an older one on the port.
		writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true, "pid": os.Getpid()})
	})
	mux.HandleFunc("/lab/hosts", l.serveHostList)
	mux.HandleFunc("/lab/hosts/", l.serveHost)
	mux.HandleFunc("/lab/vms/", l.serveVM)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="gpufleet-lab"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (l *Lab) serveHostList(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(l.hosts))
	for name := range l.hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	writeJSON(w, http.StatusOK, map[string][]string{"hosts": names})
}

type hostView struct {
	Name              string   `json:"name"`
	InMaintenanceMode bool     `json:"inMaintenanceMode"`
	ConnectionState   string   `json:"connectionState"`
	GraphicsType      string   `json:"graphicsType"`
	AssignmentPolicy  string   `json:"assignmentPolicy"`
	DriverActive      bool     `json:"driverActive"`
	VgpuProfiles      []string `json:"vgpuProfiles"`
}

func (l *Lab) hostView(lh *labHost) hostView {
	hs := lh.host()
	var v hostView
	l.newCtx().WithLock(hs, func() {
		v = hostView{
			Name:              lh.topo.Name,
			InMaintenanceMode: hs.Runtime.InMaintenanceMode,
			ConnectionState:   string(hs.Runtime.ConnectionState),
			GraphicsType:      hs.Config.GraphicsConfig.HostDefaultGraphicsType,
			AssignmentPolicy:  hs.Config.GraphicsConfig.SharedPassthruAssignmentPolicy,
			DriverActive:      lh.isDriverActive(),
			VgpuProfiles:      append([]string{}, hs.Config.SharedPassthruGpuTypes...),
		}
	})
	return v
}

// hostUpdate is a validated POST body; nil fields are left alone.
type hostUpdate struct {
	inMaintenanceMode *bool
	connectionState   *string
	graphicsType      *string
	assignmentPolicy  *string
	driverActive      *bool
}

func oneOf(field, value string, valid ...string) error {
	for _, v := range valid {
		if v == value {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not valid; valid values: %s", field, value, strings.Join(valid, ", "))
}

func parseHostUpdate(r *http.Request) (hostUpdate, error) {
	var u hostUpdate
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16))
	if err := dec.Decode(&raw); err != nil {
		return u, fmt.Errorf("body must be a JSON object: %v", err)
	}
	valid := []string{"inMaintenanceMode", "connectionState", "graphicsType", "assignmentPolicy", "driverActive"}
	for key, val := range raw {
		var err error
		switch key {
		case "inMaintenanceMode":
			u.inMaintenanceMode = new(bool)
			err = json.Unmarshal(val, u.inMaintenanceMode)
		case "driverActive":
			u.driverActive = new(bool)
			err = json.Unmarshal(val, u.driverActive)
		case "connectionState":
			u.connectionState = new(string)
			if err = json.Unmarshal(val, u.connectionState); err == nil {
				err = oneOf(key, *u.connectionState, "connected", "notResponding", "disconnected")
			}
		case "graphicsType":
			u.graphicsType = new(string)
			if err = json.Unmarshal(val, u.graphicsType); err == nil {
				err = oneOf(key, *u.graphicsType, "shared", "sharedDirect")
			}
		case "assignmentPolicy":
			u.assignmentPolicy = new(string)
			if err = json.Unmarshal(val, u.assignmentPolicy); err == nil {
				err = oneOf(key, *u.assignmentPolicy, "performance", "consolidation")
			}
		default:
			return u, fmt.Errorf("unknown field %q; valid fields: %s", key, strings.Join(valid, ", "))
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), key+":") {
				return u, err
			}
			return u, fmt.Errorf("%s: %v", key, err)
		}
	}
	return u, nil
}

func (l *Lab) serveHost(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/lab/hosts/")
	lh, ok := l.hosts[name]
	if !ok {
		writeError(w, http.StatusNotFound, "host %q not found; lab hosts: %s", name, strings.Join(l.hostNames(), ", "))
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		u, err := parseHostUpdate(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, "host %s: %v", name, err)
			return
		}
		l.applyHostUpdate(lh, u)
	default:
		writeError(w, http.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	writeJSON(w, http.StatusOK, l.hostView(lh))
}

func (l *Lab) hostNames() []string {
	names := make([]string, 0, len(l.hosts))
	for n := range l.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return names
}

func (l *Lab) applyHostUpdate(lh *labHost, u hostUpdate) {
	hs := lh.host()
	var st *graphicsState
	ctx := l.newCtx()
	ctx.WithLock(hs, func() {
		var changes []types.PropertyChange
		if u.inMaintenanceMode != nil {
			changes = append(changes,
				types.PropertyChange{Name: "runtime.inMaintenanceMode", Val: *u.inMaintenanceMode},
				types.PropertyChange{Name: "summary.runtime.inMaintenanceMode", Val: *u.inMaintenanceMode})
		}
		if u.connectionState != nil {
			state := types.HostSystemConnectionState(*u.connectionState)
			changes = append(changes,
				types.PropertyChange{Name: "runtime.connectionState", Val: state},
				types.PropertyChange{Name: "summary.runtime.connectionState", Val: state})
		}
		if len(changes) > 0 {
			ctx.Update(hs, changes)
		}
		if u.driverActive != nil {
			lh.mu.Lock()
			lh.driverActive = *u.driverActive
			lh.mu.Unlock()
		}
		if u.graphicsType != nil || u.assignmentPolicy != nil {
			var c types.HostGraphicsConfig
			if u.graphicsType != nil {
				c.HostDefaultGraphicsType = *u.graphicsType
			}
			if u.assignmentPolicy != nil {
				c.SharedPassthruAssignmentPolicy = *u.assignmentPolicy
			}
			s := lh.setGraphicsConfig(ctx, hs, c) // also re-applies the driver state
			st = &s
		} else if u.driverActive != nil {
			s := lh.applyGraphics(ctx, hs)
			st = &s
		}
	})
	if st != nil { // outside the host lock: lock order is graphics manager -> host
		ctx.WithLock(lh.gm, func() { lh.gm.set(ctx, *st) })
	}
}

type passthroughView struct {
	ID       string `json:"id"`
	VendorID int    `json:"vendorId"`
	DeviceID int    `json:"deviceId"`
	Dynamic  bool   `json:"dynamic"`
}

type nicView struct {
	Type           string `json:"type"`
	DeviceProtocol string `json:"deviceProtocol"`
	Network        string `json:"network"`
	MacAddress     string `json:"macAddress"`
}

type vmView struct {
	Name        string            `json:"name"`
	Host        string            `json:"host"`
	PowerState  string            `json:"powerState"`
	Template    bool              `json:"template"`
	Vgpus       []string          `json:"vgpus"`
	Passthrough []passthroughView `json:"passthrough"`
	Nics        []nicView         `json:"nics"`
	ExtraConfig map[string]string `json:"extraConfig"`
}

func nicType(d types.BaseVirtualEthernetCard) (string, string) {
	switch x := d.(type) {
	case *types.VirtualVmxnet3Vrdma:
		return "vmxnet3vrdma", x.DeviceProtocol
	case *types.VirtualVmxnet3:
		return "vmxnet3", ""
	case *types.VirtualVmxnet2:
		return "vmxnet2", ""
	case *types.VirtualE1000e:
		return "e1000e", ""
	case *types.VirtualE1000:
		return "e1000", ""
	case *types.VirtualSriovEthernetCard:
		return "sriov", ""
	case *types.VirtualPCNet32:
		return "pcnet32", ""
	}
	return "ethernet", ""
}

func (l *Lab) vmView(vm *simulator.VirtualMachine) vmView {
	v := vmView{
		Name: vm.Name, PowerState: string(vm.Runtime.PowerState), Template: vm.Config.Template,
		Vgpus: []string{}, Passthrough: []passthroughView{}, Nics: []nicView{}, ExtraConfig: map[string]string{},
	}
	if vm.Runtime.Host != nil {
		if lh := l.hostByRef[*vm.Runtime.Host]; lh != nil {
			v.Host = lh.topo.Name
		}
	}
	for _, d := range vm.Config.Hardware.Device {
		switch x := d.(type) {
		case *types.VirtualPCIPassthrough:
			switch b := x.Backing.(type) {
			case *types.VirtualPCIPassthroughVmiopBackingInfo:
				v.Vgpus = append(v.Vgpus, b.Vgpu)
			case *types.VirtualPCIPassthroughDeviceBackingInfo:
				dev, _ := strconv.ParseInt(strings.TrimPrefix(strings.ToLower(b.DeviceId), "0x"), 16, 32)
				v.Passthrough = append(v.Passthrough, passthroughView{
					ID: b.Id, VendorID: int(uint16(b.VendorId)), DeviceID: int(uint16(dev)),
				})
			case *types.VirtualPCIPassthroughDynamicBackingInfo:
				p := passthroughView{ID: b.AssignedId, Dynamic: true}
				if len(b.AllowedDevice) > 0 {
					p.VendorID = int(b.AllowedDevice[0].VendorId & 0xffff)
					p.DeviceID = int(b.AllowedDevice[0].DeviceId & 0xffff)
				}
				v.Passthrough = append(v.Passthrough, p)
			}
		case types.BaseVirtualEthernetCard:
			t, proto := nicType(x)
			card := x.GetVirtualEthernetCard()
			n := nicView{Type: t, DeviceProtocol: proto, MacAddress: card.MacAddress}
			switch b := card.Backing.(type) {
			case *types.VirtualEthernetCardNetworkBackingInfo:
				n.Network = b.DeviceName
			case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
				n.Network = b.Port.PortgroupKey
			}
			v.Nics = append(v.Nics, n)
		}
	}
	for _, o := range vm.Config.ExtraConfig {
		opt := o.GetOptionValue()
		v.ExtraConfig[opt.Key] = fmt.Sprint(opt.Value)
	}
	return v
}

func (l *Lab) serveVM(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/lab/vms/")
	if name == "" { // the list: every VM as vCenter shows it (the ESXi simulator reads its host's running vGPUs)
		views := []vmView{}
		ctx := l.newCtx()
		for _, e := range l.m.All("VirtualMachine") {
			if vm, ok := e.(*simulator.VirtualMachine); ok {
				ctx.WithLock(vm, func() { views = append(views, l.vmView(vm)) })
			}
		}
		writeJSON(w, http.StatusOK, map[string][]vmView{"vms": views})
		return
	}
	ctx := l.newCtx()
	for _, e := range l.m.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		var view *vmView
		ctx.WithLock(vm, func() {
			if vm.Name == name {
				v := l.vmView(vm)
				view = &v
			}
		})
		if view != nil {
			writeJSON(w, http.StatusOK, view)
			return
		}
	}
	writeError(w, http.StatusNotFound, "VM %q not found", name)
}
