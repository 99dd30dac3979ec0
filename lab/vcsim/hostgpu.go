package main

// Per-host GPU/NIC state: PCI devices, passthrough info, graphics info/config and the vGPU profiles the
// host offers, plus the two host managers vcsim lacks (HostGraphicsManager, HostPciPassthruSystem:
// vcsim's ESXi template names their morefs but implements neither).

import (
	"fmt"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	pciClassDisplay3D = 0x0302 // "3D controller" (A100/H100/T4/L40S)
	pciClassEthernet  = 0x0200
	nvidiaVendorName  = "NVIDIA Corporation"
	mellanoxVendor    = "Mellanox Technologies"
)

// labHost is the lab's view of one HostSystem. Fields that mirror vSphere properties live on the
// HostSystem itself; driverActive is lab-only state (set by the ESXi simulator through /lab/).
type labHost struct {
	m    *simulator.Registry
	topo Host
	ref  types.ManagedObjectReference
	gm   *graphicsManager
	pts  *pciPassthruSystem

	mu           sync.Mutex // guards driverActive
	driverActive bool
}

func (h *labHost) host() *simulator.HostSystem {
	return h.m.Get(h.ref).(*simulator.HostSystem)
}

func (h *labHost) isDriverActive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.driverActive
}

func vendorName(vendorID int) string {
	switch vendorID {
	case 0x10DE:
		return nvidiaVendorName
	case 0x15B3:
		return mellanoxVendor
	}
	return fmt.Sprintf("vendor 0x%04x", vendorID)
}

func pciDevice(id string, class, vendorID, deviceID int, name string) types.HostPciDevice {
	bus, slot, fn, _ := parsePciID(id) // validated when the topology was loaded
	return types.HostPciDevice{
		Id:           id,
		ClassId:      int16(class),
		Bus:          bus,
		Slot:         slot,
		Function:     fn,
		VendorId:     int16(vendorID), // xsd:short: values above 0x7fff wrap, as on a real vCenter
		SubVendorId:  int16(vendorID),
		VendorName:   vendorName(vendorID),
		DeviceId:     int16(deviceID),
		ParentBridge: fmt.Sprintf("0000:%02x:00.0", bus-1), // the PCIe root port above the slot
		DeviceName:   name,
	}
}

// pciDevices returns the host's GPUs then NICs as HostPciDevice.
func (h *labHost) pciDevices() []types.HostPciDevice {
	var out []types.HostPciDevice
	for _, g := range h.topo.Gpus {
		out = append(out, pciDevice(g.PciID, pciClassDisplay3D, g.VendorID, g.DeviceID, g.DeviceName))
	}
	for _, n := range h.topo.Nics {
		out = append(out, pciDevice(n.PciID, pciClassEthernet, n.VendorID, n.DeviceID, n.DeviceName))
	}
	return out
}

// profiles is the de-duplicated list of vGPU profiles over the host's GPUs, in topology order.
func (h *labHost) profiles() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range h.topo.Gpus {
		for _, p := range g.VgpuProfiles {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// seed fills the host's hardware and config with the topology's devices and registers its managers.
func (h *labHost) seed(hs *simulator.HostSystem) {
	devices := append([]types.HostPciDevice{}, hs.Hardware.PciDevice...)
	hs.Hardware.PciDevice = append(devices, h.pciDevices()...)
	if h.topo.MemoryGB > 0 {
		hs.Hardware.MemorySize = int64(h.topo.MemoryGB) << 30
		hs.Summary.Hardware.MemorySize = hs.Hardware.MemorySize
	}
	if h.topo.CpuModel != "" {
		hs.Summary.Hardware.CpuModel = h.topo.CpuModel
	}
	if h.topo.NumaNodes > 0 {
		numa := types.HostNumaInfo{Type: "NUMA", NumNodes: int32(h.topo.NumaNodes)}
		hs.Hardware.NumaInfo = &numa
	}
	// The NVIDIA vGPU host driver the lab carries targets ESXi 8.0 (vSphere 8 multi-vGPU rules apply).
	product := hs.Config.Product
	product.Version = "8.0.2"
	product.Build = "22380479"
	product.FullName = "VMware ESXi 8.0.2 build-22380479"
	hs.Config.Product = product
	summaryProduct := product
	hs.Summary.Config.Product = &summaryProduct

	var passthru []types.BaseHostPciPassthruInfo
	for _, d := range h.pciDevices() {
		passthru = append(passthru, &types.HostPciPassthruInfo{
			Id: d.Id, DependentDevice: d.Id, PassthruEnabled: true, PassthruCapable: true, PassthruActive: true,
		})
	}
	hs.Config.PciPassthruInfo = passthru
	hs.Config.GraphicsConfig = &types.HostGraphicsConfig{
		HostDefaultGraphicsType:        string(types.HostGraphicsConfigGraphicsTypeShared),
		SharedPassthruAssignmentPolicy: string(types.HostGraphicsConfigSharedPassthruAssignmentPolicyPerformance),
	}

	h.gm = &graphicsManager{lab: h}
	h.gm.Self = types.ManagedObjectReference{Type: "HostGraphicsManager", Value: "graphicsManager-" + h.ref.Value}
	h.m.Put(h.gm)
	gmRef := h.gm.Self
	hs.ConfigManager.GraphicsManager = &gmRef

	h.pts = &pciPassthruSystem{lab: h}
	h.pts.Self = types.ManagedObjectReference{Type: "HostPciPassthruSystem", Value: "pciPassthruSystem-" + h.ref.Value}
	h.pts.PciPassthruInfo = passthru
	h.m.Put(h.pts)
	ptsRef := h.pts.Self
	hs.ConfigManager.PciPassthruSystem = &ptsRef

	h.gm.set(nil, h.applyGraphics(nil, hs))
}

// graphicsState is what the graphics manager shows; copied to it under its own lock.
type graphicsState struct {
	info     []types.HostGraphicsInfo
	cfg      types.HostGraphicsConfig
	gpuTypes []string
	caps     []types.HostSharedGpuCapabilities
}

// applyGraphics recomputes graphicsInfo and the offered vGPU types from the driver state and
// graphicsConfig, writes them to the host config (through ctx, notifying property collector listeners;
// directly when ctx is nil, before serving) and returns what the graphics manager must show. Callers hold
// the host's lock; they pass the result to graphicsManager.set without it (lock order is graphics
// manager -> host, never the reverse).
func (h *labHost) applyGraphics(ctx *simulator.Context, hs *simulator.HostSystem) graphicsState {
	active := h.isDriverActive()
	cfg := hs.Config.GraphicsConfig
	perDevice := map[string]string{}
	for _, d := range cfg.DeviceType {
		perDevice[d.DeviceId] = d.GraphicsType
	}
	var info []types.HostGraphicsInfo
	for _, g := range h.topo.Gpus {
		gtype := string(types.HostGraphicsInfoGraphicsTypeBasic) // no NVIDIA host driver loaded
		if active {
			gtype = cfg.HostDefaultGraphicsType
			if t, ok := perDevice[g.PciID]; ok {
				gtype = t
			}
		}
		info = append(info, types.HostGraphicsInfo{
			DeviceName:     g.DeviceName,
			VendorName:     nvidiaVendorName,
			PciId:          g.PciID,
			GraphicsType:   gtype,
			MemorySizeInKB: gpuMemoryKB(g),
		})
	}
	var gpuTypes []string
	var caps []types.HostSharedGpuCapabilities
	if active {
		gpuTypes = h.profiles()
		for _, p := range gpuTypes {
			caps = append(caps, types.HostSharedGpuCapabilities{
				Vgpu: p, DiskSnapshotSupported: true, MemorySnapshotSupported: true,
				SuspendSupported: true, MigrateSupported: true,
			})
		}
	}
	if ctx == nil {
		hs.Config.GraphicsInfo = info
		hs.Config.SharedPassthruGpuTypes = gpuTypes
		hs.Config.SharedGpuCapabilities = caps
	} else {
		ctx.Update(hs, []types.PropertyChange{
			{Name: "config.graphicsInfo", Val: info},
			{Name: "config.graphicsConfig", Val: cfg},
			{Name: "config.sharedPassthruGpuTypes", Val: gpuTypes},
			{Name: "config.sharedGpuCapabilities", Val: caps},
		})
	}
	return graphicsState{info: info, cfg: *cfg, gpuTypes: gpuTypes, caps: caps}
}

// set shows st on the graphics manager, through ctx (nil: directly, before serving). Callers hold the
// manager's lock.
func (m *graphicsManager) set(ctx *simulator.Context, st graphicsState) {
	cfg := st.cfg
	if ctx == nil {
		m.GraphicsInfo = st.info
		m.GraphicsConfig = &cfg
		m.SharedPassthruGpuTypes = st.gpuTypes
		m.SharedGpuCapabilities = st.caps
	} else {
		ctx.Update(m, []types.PropertyChange{
			{Name: "graphicsInfo", Val: st.info},
			{Name: "graphicsConfig", Val: &cfg},
			{Name: "sharedPassthruGpuTypes", Val: st.gpuTypes},
			{Name: "sharedGpuCapabilities", Val: st.caps},
		})
	}
}

// validateGraphicsConfig checks a HostGraphicsConfig against what ESXi accepts for this host.
func (h *labHost) validateGraphicsConfig(c *types.HostGraphicsConfig) types.BaseMethodFault {
	validType := func(t string) bool {
		return t == string(types.HostGraphicsConfigGraphicsTypeShared) ||
			t == string(types.HostGraphicsConfigGraphicsTypeSharedDirect)
	}
	if c.HostDefaultGraphicsType != "" && !validType(c.HostDefaultGraphicsType) {
		return &types.InvalidArgument{InvalidProperty: "config.hostDefaultGraphicsType"}
	}
	switch c.SharedPassthruAssignmentPolicy {
	case "", string(types.HostGraphicsConfigSharedPassthruAssignmentPolicyPerformance),
		string(types.HostGraphicsConfigSharedPassthruAssignmentPolicyConsolidation):
	default:
		return &types.InvalidArgument{InvalidProperty: "config.sharedPassthruAssignmentPolicy"}
	}
	for _, d := range c.DeviceType {
		found := false
		for _, g := range h.topo.Gpus {
			found = found || g.PciID == d.DeviceId
		}
		if !found {
			return &types.InvalidArgument{InvalidProperty: "config.deviceType.deviceId"}
		}
		if !validType(d.GraphicsType) {
			return &types.InvalidArgument{InvalidProperty: "config.deviceType.graphicsType"}
		}
	}
	return nil
}

// setGraphicsConfig applies a validated config (empty fields keep their value). Callers hold the host lock.
func (h *labHost) setGraphicsConfig(ctx *simulator.Context, hs *simulator.HostSystem, c types.HostGraphicsConfig) graphicsState {
	cur := *hs.Config.GraphicsConfig
	if c.HostDefaultGraphicsType != "" {
		cur.HostDefaultGraphicsType = c.HostDefaultGraphicsType
	}
	if c.SharedPassthruAssignmentPolicy != "" {
		cur.SharedPassthruAssignmentPolicy = c.SharedPassthruAssignmentPolicy
	}
	if c.DeviceType != nil {
		cur.DeviceType = c.DeviceType
	}
	hs.Config.GraphicsConfig = &cur
	return h.applyGraphics(ctx, hs)
}

// graphicsManager is the host's HostGraphicsManager (vcsim has none).
type graphicsManager struct {
	mo.HostGraphicsManager
	lab *labHost
}

func (m *graphicsManager) UpdateGraphicsConfig(ctx *simulator.Context, req *types.UpdateGraphicsConfig) soap.HasFault {
	body := &methods.UpdateGraphicsConfigBody{}
	if fault := m.lab.validateGraphicsConfig(&req.Config); fault != nil {
		body.Fault_ = simulator.Fault("invalid graphics configuration", fault)
		return body
	}
	hs := m.lab.host()
	var st graphicsState
	ctx.WithLock(hs, func() { st = m.lab.setGraphicsConfig(ctx, hs, req.Config) })
	m.set(ctx, st) // the SOAP call holds this manager's lock
	body.Res = &types.UpdateGraphicsConfigResponse{}
	return body
}

func (m *graphicsManager) RefreshGraphicsManager(ctx *simulator.Context, req *types.RefreshGraphicsManager) soap.HasFault {
	hs := m.lab.host()
	var st graphicsState
	ctx.WithLock(hs, func() { st = m.lab.applyGraphics(ctx, hs) })
	m.set(ctx, st)
	return &methods.RefreshGraphicsManagerBody{Res: &types.RefreshGraphicsManagerResponse{}}
}

// IsSharedGraphicsActive: true when a GPU runs a shared (vSGA) or shared-direct (vGPU) type.
func (m *graphicsManager) IsSharedGraphicsActive(req *types.IsSharedGraphicsActive) soap.HasFault {
	active := false
	for _, g := range m.GraphicsInfo {
		active = active || g.GraphicsType == "shared" || g.GraphicsType == "sharedDirect"
	}
	return &methods.IsSharedGraphicsActiveBody{Res: &types.IsSharedGraphicsActiveResponse{Returnval: active}}
}

// pciPassthruSystem is the host's HostPciPassthruSystem (vcsim has none).
type pciPassthruSystem struct {
	mo.HostPciPassthruSystem
	lab *labHost
}

func (p *pciPassthruSystem) Refresh(req *types.Refresh) soap.HasFault {
	return &methods.RefreshBody{Res: &types.RefreshResponse{}}
}

// UpdatePassthruConfig toggles passthrough per device; the lab applies it at once (as with applyNow).
func (p *pciPassthruSystem) UpdatePassthruConfig(ctx *simulator.Context, req *types.UpdatePassthruConfig) soap.HasFault {
	body := &methods.UpdatePassthruConfigBody{}
	hs := p.lab.host()
	var fault types.BaseMethodFault
	ctx.WithLock(hs, func() {
		next := make([]types.BaseHostPciPassthruInfo, len(hs.Config.PciPassthruInfo))
		for i, info := range hs.Config.PciPassthruInfo {
			c := *info.GetHostPciPassthruInfo()
			next[i] = &c
		}
		for _, change := range req.Config {
			c := change.GetHostPciPassthruConfig()
			found := false
			for _, info := range next {
				i := info.GetHostPciPassthruInfo()
				if i.Id == c.Id {
					found = true
					i.PassthruEnabled = c.PassthruEnabled
					i.PassthruActive = c.PassthruEnabled
				}
			}
			if !found {
				fault = &types.InvalidArgument{InvalidProperty: "config.id"}
				return
			}
		}
		ctx.Update(hs, []types.PropertyChange{{Name: "config.pciPassthruInfo", Val: next}})
		ctx.Update(p, []types.PropertyChange{{Name: "pciPassthruInfo", Val: next}})
	})
	if fault != nil {
		body.Fault_ = simulator.Fault("unknown PCI device id", fault)
		return body
	}
	body.Res = &types.UpdatePassthruConfigResponse{}
	return body
}

// activePassthru returns the HostPciDevice entries whose passthrough is active. Callers hold the host lock.
func (h *labHost) activePassthru(hs *simulator.HostSystem) []types.HostPciDevice {
	active := map[string]bool{}
	for _, info := range hs.Config.PciPassthruInfo {
		i := info.GetHostPciPassthruInfo()
		active[i.Id] = i.PassthruActive
	}
	var out []types.HostPciDevice
	for _, d := range h.pciDevices() {
		if active[d.Id] {
			out = append(out, d)
		}
	}
	return out
}
