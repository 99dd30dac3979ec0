package main

// Post-task fixes for what vcsim gets wrong or lacks, applied through the registry's handler mechanism
// (Registry.AddHandler). vcsim runs each task's Execute on a goroutine that holds the lock of the task's
// entity (the VM for reconfigure, clone and power operations); the hook wraps Execute when the task is
// registered, so the fix runs inside that lock and before the task reads "success": a client never
// observes the unfixed state.
//
//   - extraConfig: vSphere removes a key set to "" and never stores an empty value; vcsim stores a new
//     key given as "" (reconfigVm, createVm; cloneVm through its createVm).
//   - clone: vcsim drops the source's extraConfig, firmware and boot options, and the clone spec's
//     extraConfig, numCPUs and memoryMB (captured from the request by Lab.route).
//   - maintenance mode: each transition is appended to the lab's events log when the task completes (the
//     test oracle of "never more than k hosts in maintenance"), exactly, however short the window.
//   - power on: Dynamic DirectPath devices get an assignedId (a free matching device on the host);
//     a VM that has a lab guest persona reports the persona's address as guest.ipAddress.

import (
	"encoding/json"
	"log"
	"os"
	"strings"
	"syscall"
	"time"

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

func (h *taskHook) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}
func (h *taskHook) RemoveObject(*simulator.Context, types.ManagedObjectReference)         {}

// PutObject sees every new registry object; Task.Run registers a task before its goroutine calls Execute.
func (h *taskHook) PutObject(_ *simulator.Context, obj mo.Reference) {
	task, ok := obj.(*simulator.Task)
	if !ok || task.Info.Entity == nil {
		return
	}
	if name := wsdlTaskName(task.Info.Name, task.Info.Entity.Type); name != task.Info.Name {
		h.lab.newCtx().WithLock(task, func() { task.Info.Name = name })
	}
	var fix func(entity types.ManagedObjectReference, result types.AnyType)
	switch task.Info.DescriptionId {
	case "VirtualMachine.reconfigVm":
		fix = h.afterReconfigure
	case "Folder.createVm":
		fix = h.afterCreate
	case "VirtualMachine.cloneVm":
		fix = h.afterClone
	case "VirtualMachine.powerOn":
		fix = h.afterPowerOn
	case "VirtualMachine.powerOff":
		fix = h.afterPowerOff
	case "HostSystem.enterMaintenanceMode":
		fix = func(e types.ManagedObjectReference, _ types.AnyType) { h.lab.recordHostEvent(e, "maintenance_enter") }
	case "HostSystem.exitMaintenanceMode":
		fix = func(e types.ManagedObjectReference, _ types.AnyType) { h.lab.recordHostEvent(e, "maintenance_exit") }
	default:
		return
	}
	entity, run := *task.Info.Entity, task.Execute
	task.Execute = func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, fault := run(t)
		if fault == nil {
			fix(entity, res)
		}
		return res, fault
	}
}

// wsdlTaskName is the method a task runs, as vCenter names it in TaskInfo.name ("CloneVM_Task"); vcsim
// names it after its own runner ("CloneVm", "PowerOn"), which pyVmomi cannot resolve: pyVim's WaitForTask
// then fails on the first update that shows the task running (vcsim runs tasks on their own goroutine).
func wsdlTaskName(name, entityType string) string {
	known := types.TypeFunc()
	candidates := []string{name, name + "_Task", strings.Replace(name, "Vm", "VM", 1) + "_Task"}
	if entityType == "VirtualMachine" {
		candidates = append(candidates, name+"VM_Task")
	}
	for _, c := range candidates {
		if _, ok := known(c); ok && strings.HasSuffix(c, "_Task") {
			return c
		}
	}
	return name
}

// The entity VM is locked by the task; a VM a task created is locked here.

func (h *taskHook) afterReconfigure(entity types.ManagedObjectReference, _ types.AnyType) {
	if vm := h.lab.lookupVM(entity); vm != nil {
		normalizeExtraConfig(h.lab.newCtx(), vm)
	}
}

func (h *taskHook) afterCreate(_ types.ManagedObjectReference, res types.AnyType) {
	ref, ok := res.(types.ManagedObjectReference)
	if !ok {
		return
	}
	if vm := h.lab.lookupVM(ref); vm != nil {
		ctx := h.lab.newCtx()
		ctx.WithLock(vm, func() { normalizeExtraConfig(ctx, vm) })
	}
}

func (h *taskHook) afterClone(entity types.ManagedObjectReference, res types.AnyType) {
	ref, ok := res.(types.ManagedObjectReference)
	src := h.lab.lookupVM(entity)
	if !ok || src == nil {
		return
	}
	if dst := h.lab.lookupVM(ref); dst != nil {
		ctx := h.lab.newCtx()
		ctx.WithLock(dst, func() { completeClone(ctx, src, dst, h.lab.takeClone(entity, dst)) })
	}
}

func (h *taskHook) afterPowerOn(entity types.ManagedObjectReference, _ types.AnyType) {
	if vm := h.lab.lookupVM(entity); vm != nil {
		h.lab.onPowerOn(h.lab.newCtx(), vm)
	}
}

func (h *taskHook) afterPowerOff(entity types.ManagedObjectReference, _ types.AnyType) {
	if vm := h.lab.lookupVM(entity); vm != nil {
		h.lab.onPowerOff(h.lab.newCtx(), vm)
	}
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

func normalizeExtraConfig(ctx *simulator.Context, vm *simulator.VirtualMachine) {
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
	ctx.Update(vm, []types.PropertyChange{{Name: "config.extraConfig", Val: merged}})
}

// completeClone gives the clone the source's extraConfig and, over it, the clone spec's; the source's
// firmware and boot options; the spec's CPUs and memory when it sets them (vcsim copies the source's
// hardware version, CPUs and memory itself, and drops the clone spec's config).
func completeClone(ctx *simulator.Context, src, dst *simulator.VirtualMachine, spec *types.VirtualMachineConfigSpec) {
	opts := append(append([]types.BaseOptionValue{}, src.Config.ExtraConfig...), dst.Config.ExtraConfig...)
	firmware, boot := src.Config.Firmware, src.Config.BootOptions
	if spec != nil {
		opts = append(opts, spec.ExtraConfig...)
		if spec.Firmware != "" {
			firmware = spec.Firmware
		}
		if spec.BootOptions != nil {
			boot = spec.BootOptions
		}
	}
	changes := []types.PropertyChange{
		{Name: "config.extraConfig", Val: mergeExtraConfig(opts)},
		{Name: "config.firmware", Val: firmware},
	}
	if boot != nil {
		b := *boot
		changes = append(changes, types.PropertyChange{Name: "config.bootOptions", Val: &b})
	}
	if spec != nil && spec.NumCPUs > 0 {
		changes = append(changes,
			types.PropertyChange{Name: "config.hardware.numCPU", Val: spec.NumCPUs},
			types.PropertyChange{Name: "summary.config.numCpu", Val: spec.NumCPUs})
	}
	if spec != nil && spec.MemoryMB > 0 {
		changes = append(changes,
			types.PropertyChange{Name: "config.hardware.memoryMB", Val: int32(spec.MemoryMB)},
			types.PropertyChange{Name: "summary.config.memorySizeMB", Val: int32(spec.MemoryMB)})
	}
	ctx.Update(dst, changes)
}

func assignKey(host types.ManagedObjectReference, pciID string) string {
	return host.Value + "/" + strings.ToLower(pciID)
}

// onPowerOn assigns Dynamic DirectPath devices and publishes the guest persona's address.
// Runs with the VM's lock held; other VMs' assignments are tracked in lab.assigned, not read from them.
func (l *Lab) onPowerOn(ctx *simulator.Context, vm *simulator.VirtualMachine) {
	if vm.Runtime.Host == nil {
		return
	}
	lh := l.hostByRef[*vm.Runtime.Host]
	if lh != nil {
		l.assignDevices(ctx, vm, lh)
	}
	if g, ok := l.guests[vm.Name]; ok {
		l.setGuestInfo(ctx, vm, g.Address, g.Name, true)
	}
}

func (l *Lab) onPowerOff(ctx *simulator.Context, vm *simulator.VirtualMachine) {
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
		ctx.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
	}
	if _, ok := l.guests[vm.Name]; ok {
		l.setGuestInfo(ctx, vm, "", "", false)
	}
}

func (l *Lab) assignDevices(ctx *simulator.Context, vm *simulator.VirtualMachine, lh *labHost) {
	hs := lh.host()
	var devices []types.HostPciDevice
	ctx.WithLock(hs, func() { devices = lh.activePassthru(hs) })

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
		ctx.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
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

func (l *Lab) setGuestInfo(ctx *simulator.Context, vm *simulator.VirtualMachine, ip, hostName string, running bool) {
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
	ctx.Update(vm, []types.PropertyChange{
		{Name: "guest.ipAddress", Val: ip},
		{Name: "guest.hostName", Val: hostName},
		{Name: "guest.toolsStatus", Val: tools},
		{Name: "guest.toolsRunningStatus", Val: runStatus},
		{Name: "guest.guestState", Val: state},
	})
}

// recordHostEvent appends {"ts", "host", "event", "via": "vcenter"} to the lab's events log, under the same
// exclusive lock the Python side (lab/esxi/events.py) takes.
func (l *Lab) recordHostEvent(ref types.ManagedObjectReference, event string) {
	host, ok := l.hostByRef[ref]
	if !ok || l.eventsFile == "" {
		return
	}
	line, err := json.Marshal(map[string]any{
		"ts": float64(time.Now().UnixNano()) / 1e9, "host": host.topo.Name, "event": event, "via": "vcenter",
	})
	if err != nil {
		return
	}
	f, err := os.OpenFile(l.eventsFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Printf("events log %s: %v", l.eventsFile, err)
		return
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err == nil {
		defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		log.Printf("events log %s: %v", l.eventsFile, err)
	}
}
