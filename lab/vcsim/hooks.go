package main

// Post-task fixes for what vcsim 0.24 gets wrong, applied through the registry's handler mechanism
// (Registry.AddHandler): a handler sees every property change, including a task turning "success".
// The task runs inside the SOAP call that holds the VM's lock, so clients never observe the
// unfixed state.
//
//   - extraConfig: vcsim appends every key on reconfigure; vSphere replaces a key's value and
//     removes a key set to "" (reconfigVm, createVm, cloneVm).
//   - clone: vcsim drops the source's extraConfig, firmware and hardware version.
//   - power on: Dynamic DirectPath devices get an assignedId (a free matching device on the host);
//     a VM that has a lab guest persona reports the persona's address as guest.ipAddress.

import (
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type taskHook struct {
	lab *Lab
}

func (h *taskHook) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "LabTaskHook", Value: "lab-task-hook"}
}

func (h *taskHook) PutObject(mo.Reference)                    {}
func (h *taskHook) RemoveObject(types.ManagedObjectReference) {}

func (h *taskHook) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	task, ok := obj.(*mo.Task)
	if !ok || !succeeded(changes) || task.Info.Entity == nil {
		return
	}
	switch task.Info.DescriptionId {
	case "VirtualMachine.reconfigVm":
		if vm := lookupVM(*task.Info.Entity); vm != nil {
			normalizeExtraConfig(vm)
		}
	case "Folder.createVm":
		if ref, ok := task.Info.Result.(types.ManagedObjectReference); ok {
			if vm := lookupVM(ref); vm != nil {
				normalizeExtraConfig(vm)
			}
		}
	case "VirtualMachine.cloneVm":
		ref, ok := task.Info.Result.(types.ManagedObjectReference)
		src, dst := lookupVM(*task.Info.Entity), (*simulator.VirtualMachine)(nil)
		if ok {
			dst = lookupVM(ref)
		}
		if src != nil && dst != nil {
			completeClone(src, dst)
		}
	case "VirtualMachine.powerOn":
		if vm := lookupVM(*task.Info.Entity); vm != nil {
			h.lab.onPowerOn(vm)
		}
	case "VirtualMachine.powerOff":
		if vm := lookupVM(*task.Info.Entity); vm != nil {
			h.lab.onPowerOff(vm)
		}
	}
}

func succeeded(changes []types.PropertyChange) bool {
	for _, c := range changes {
		if c.Name == "info.state" {
			if s, ok := c.Val.(types.TaskInfoState); ok && s == types.TaskInfoStateSuccess {
				return true
			}
		}
	}
	return false
}

func lookupVM(ref types.ManagedObjectReference) *simulator.VirtualMachine {
	vm, _ := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	return vm
}

// mergeExtraConfig keeps the first position of each key with its last value and drops keys whose
// value is the empty string (the vSphere way to delete an option).
func mergeExtraConfig(opts []types.BaseOptionValue) []types.BaseOptionValue {
	index := map[string]int{}
	var merged []types.BaseOptionValue
	for _, o := range opts {
		key := o.GetOptionValue().Key
		if i, ok := index[key]; ok {
			merged[i] = o
			continue
		}
		index[key] = len(merged)
		merged = append(merged, o)
	}
	out := merged[:0:0]
	for _, o := range merged {
		if s, ok := o.GetOptionValue().Value.(string); ok && s == "" {
			continue
		}
		out = append(out, o)
	}
	return out
}

func normalizeExtraConfig(vm *simulator.VirtualMachine) {
	merged := mergeExtraConfig(vm.Config.ExtraConfig)
	if len(merged) == len(vm.Config.ExtraConfig) {
		same := true
		for i := range merged {
			same = same && merged[i] == vm.Config.ExtraConfig[i]
		}
		if same {
			return
		}
	}
	vm.Config.ExtraConfig = merged
	simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.extraConfig", Val: merged}})
}

func completeClone(src, dst *simulator.VirtualMachine) {
	opts := append(append([]types.BaseOptionValue{}, src.Config.ExtraConfig...), dst.Config.ExtraConfig...)
	dst.Config.ExtraConfig = mergeExtraConfig(opts)
	dst.Config.Firmware = src.Config.Firmware
	dst.Config.Version = src.Config.Version
	if src.Config.BootOptions != nil {
		boot := *src.Config.BootOptions
		dst.Config.BootOptions = &boot
	}
	simulator.Map.Update(dst, []types.PropertyChange{
		{Name: "config.extraConfig", Val: dst.Config.ExtraConfig},
		{Name: "config.firmware", Val: dst.Config.Firmware},
		{Name: "config.version", Val: dst.Config.Version},
	})
}

func assignKey(host types.ManagedObjectReference, pciID string) string {
	return host.Value + "/" + strings.ToLower(pciID)
}

// onPowerOn assigns Dynamic DirectPath devices and publishes the guest persona's address.
// Runs with the VM's lock held; other VMs' assignments are tracked in lab.assigned, not read from them.
func (l *Lab) onPowerOn(vm *simulator.VirtualMachine) {
	if vm.Runtime.Host == nil {
		return
	}
	lh := l.hostByRef[*vm.Runtime.Host]
	if lh != nil {
		l.assignDevices(vm, lh)
	}
	if g, ok := l.guests[vm.Name]; ok {
		l.setGuestInfo(vm, g.Address, g.Name, true)
	}
}

func (l *Lab) onPowerOff(vm *simulator.VirtualMachine) {
	l.assignMu.Lock()
	for k, owner := range l.assigned {
		if owner == vm.Self.Value {
			delete(l.assigned, k)
		}
	}
	l.assignMu.Unlock()
	changed := false
	for _, d := range vm.Config.Hardware.Device {
		if p, ok := d.(*types.VirtualPCIPassthrough); ok {
			if b, ok := p.Backing.(*types.VirtualPCIPassthroughDynamicBackingInfo); ok && b.AssignedId != "" {
				b.AssignedId = ""
				changed = true
			}
		}
	}
	if changed {
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
	}
	if _, ok := l.guests[vm.Name]; ok {
		l.setGuestInfo(vm, "", "", false)
	}
}

func (l *Lab) assignDevices(vm *simulator.VirtualMachine, lh *labHost) {
	hs := lh.host()
	var devices []types.HostPciDevice
	simulator.Map.WithLock(hs, func() { devices = lh.activePassthru(hs) })

	l.assignMu.Lock()
	defer l.assignMu.Unlock()
	changed := false
	// Fixed DirectPath devices are taken first so dynamic ones do not land on them.
	for _, d := range vm.Config.Hardware.Device {
		if p, ok := d.(*types.VirtualPCIPassthrough); ok {
			if b, ok := p.Backing.(*types.VirtualPCIPassthroughDeviceBackingInfo); ok {
				l.assigned[assignKey(lh.ref, b.Id)] = vm.Self.Value
			}
		}
	}
	for _, d := range vm.Config.Hardware.Device {
		p, ok := d.(*types.VirtualPCIPassthrough)
		if !ok {
			continue
		}
		b, ok := p.Backing.(*types.VirtualPCIPassthroughDynamicBackingInfo)
		if !ok {
			continue
		}
		if b.AssignedId != "" {
			l.assigned[assignKey(lh.ref, b.AssignedId)] = vm.Self.Value
			continue
		}
		for _, dev := range devices {
			if _, taken := l.assigned[assignKey(lh.ref, dev.Id)]; taken || !allowed(b.AllowedDevice, dev) {
				continue
			}
			b.AssignedId = dev.Id
			l.assigned[assignKey(lh.ref, dev.Id)] = vm.Self.Value
			changed = true
			break
		}
	}
	if changed {
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
	}
}

func allowed(list []types.VirtualPCIPassthroughAllowedDevice, dev types.HostPciDevice) bool {
	for _, a := range list {
		if a.VendorId&0xffff == int32(uint16(dev.VendorId)) && a.DeviceId&0xffff == int32(uint16(dev.DeviceId)) {
			return true
		}
	}
	return false
}

func (l *Lab) setGuestInfo(vm *simulator.VirtualMachine, ip, hostName string, running bool) {
	tools := types.VirtualMachineToolsStatusToolsNotRunning
	runStatus := string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	state := "notRunning"
	if running {
		tools = types.VirtualMachineToolsStatusToolsOk
		runStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		state = "running"
	}
	vm.Guest.IpAddress = ip
	vm.Guest.HostName = hostName
	vm.Guest.ToolsStatus = tools
	vm.Guest.ToolsRunningStatus = runStatus
	vm.Guest.GuestState = state
	if vm.Summary.Guest != nil {
		vm.Summary.Guest.IpAddress = ip
		vm.Summary.Guest.HostName = hostName
		vm.Summary.Guest.ToolsStatus = tools
		vm.Summary.Guest.ToolsRunningStatus = runStatus
	}
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "guest.ipAddress", Val: ip},
		{Name: "guest.hostName", Val: hostName},
		{Name: "guest.toolsStatus", Val: tools},
		{Name: "guest.toolsRunningStatus", Val: runStatus},
		{Name: "guest.guestState", Val: state},
	})
}
