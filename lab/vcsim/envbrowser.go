package main

// EnvironmentBrowser.QueryConfigTarget with the GPU parts vcsim leaves out: the vGPU profiles a host
// offers (sharedGpuPassthroughTypes) and its passthrough-capable PCI devices (pciPassthrough,
// dynamicPassthrough). vcsim's own answer (CPUs, datastores, networks) is kept and added to. Its
// EnvironmentBrowser.QueryConfigTargetResponse field can only replace the whole answer with a fixed one;
// the GPU parts change with each host's driver and passthrough state and with the host asked about.

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// envBrowser answers QueryConfigTarget for the cluster's EnvironmentBrowser (see Lab.override).
type envBrowser struct {
	*simulator.EnvironmentBrowser
	lab   *Lab
	hosts []types.ManagedObjectReference // hosts of the owning compute resource
}

func (b *envBrowser) QueryConfigTarget(ctx *simulator.Context, req *types.QueryConfigTarget) soap.HasFault {
	res := b.EnvironmentBrowser.QueryConfigTarget(ctx, req)
	body, ok := res.(*methods.QueryConfigTargetBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	target := body.Res.Returnval

	hosts := b.hosts
	if req.Host != nil {
		hosts = []types.ManagedObjectReference{*req.Host}
	}
	seenProfile := map[string]bool{}
	seenDynamic := map[[2]int32]bool{}
	for _, ref := range hosts {
		lh := b.lab.hostByRef[ref]
		if lh == nil {
			continue
		}
		hs := lh.host()
		var devices []types.HostPciDevice
		var profiles []string
		var systemID string
		ctx.WithLock(hs, func() {
			devices = lh.activePassthru(hs)
			profiles = append(profiles, hs.Config.SharedPassthruGpuTypes...)
			systemID = hs.Hardware.SystemInfo.Uuid
		})
		for _, p := range profiles {
			if seenProfile[p] {
				continue
			}
			seenProfile[p] = true
			target.SharedGpuPassthroughTypes = append(target.SharedGpuPassthroughTypes,
				types.VirtualMachinePciSharedGpuPassthroughInfo{
					VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: p},
					Vgpu:                     p,
				})
		}
		for _, d := range devices {
			target.PciPassthrough = append(target.PciPassthrough, &types.VirtualMachinePciPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: d.DeviceName},
				PciDevice:                d,
				SystemId:                 systemID,
			})
			key := [2]int32{int32(uint16(d.VendorId)), int32(uint16(d.DeviceId))}
			if seenDynamic[key] {
				continue
			}
			seenDynamic[key] = true
			target.DynamicPassthrough = append(target.DynamicPassthrough, types.VirtualMachineDynamicPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: d.DeviceName},
				VendorName:               d.VendorName,
				DeviceName:               d.DeviceName,
				VendorId:                 key[0],
				DeviceId:                 key[1],
			})
		}
	}
	return body
}
