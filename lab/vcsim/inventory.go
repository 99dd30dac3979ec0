package main

// Builds the lab inventory from the topology inside an (empty) vcsim VPX model, through the in-process
// SOAP client: datacenter, cluster, hosts named as in the topology, one shared datastore, the VMs.

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	labDatastoreCapacity = int64(256) << 40 // 256 TiB: the lab datastore never runs out
	vmHardwareVersion    = "vmx-20"         // ESXi 8.0
	vmDiskKB             = int64(40) << 20  // 40 GiB
)

// Lab holds the lab-only state next to the vcsim registry.
type Lab struct {
	topo           *Topology
	hosts          map[string]*labHost
	hostByRef      map[types.ManagedObjectReference]*labHost
	guests         map[string]Guest
	instanceUUID   string
	licenseManager types.ManagedObjectReference

	assignMu sync.Mutex
	assigned map[string]string // host/pci id -> VM moref value (Dynamic DirectPath assignments)
}

// taskResult reads a finished task from the registry: vcsim runs tasks synchronously, so waiting
// through the property collector (thousands of times for a big lab) is not needed.
func taskResult(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	t, ok := simulator.Map.Get(task.Reference()).(*simulator.Task)
	if !ok {
		return nil, fmt.Errorf("task %s not found", task.Reference())
	}
	if t.Info.State != types.TaskInfoStateSuccess {
		if t.Info.Error != nil {
			return nil, fmt.Errorf("%s: %T", t.Info.DescriptionId, t.Info.Error.Fault)
		}
		return nil, fmt.Errorf("%s: state %s", t.Info.DescriptionId, t.Info.State)
	}
	return t.Info.Result, nil
}

func buildLab(ctx context.Context, model *simulator.Model, topo *Topology, dsDir string) (*Lab, error) {
	phase := newPhaseTimer()
	defer phase.done()
	c, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return nil, err
	}
	lab := &Lab{
		topo:         topo,
		hosts:        map[string]*labHost{},
		hostByRef:    map[types.ManagedObjectReference]*labHost{},
		guests:       map[string]Guest{},
		instanceUUID: c.ServiceContent.About.InstanceUuid,
		assigned:     map[string]string{},
	}
	for _, g := range topo.Guests {
		lab.guests[g.Name] = g
	}

	dc, err := object.NewRootFolder(c).CreateDatacenter(ctx, topo.Datacenter)
	if err != nil {
		return nil, fmt.Errorf("datacenter %s: %w", topo.Datacenter, err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}
	cluster, err := folders.HostFolder.CreateCluster(ctx, topo.Cluster, types.ClusterConfigSpecEx{})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", topo.Cluster, err)
	}

	hostObjs := map[string]*object.HostSystem{}
	for _, h := range topo.Hosts {
		res, err := taskResult(cluster.AddHost(ctx, types.HostConnectSpec{HostName: h.Name, Force: true}, true, nil, nil))
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		ref := res.(types.ManagedObjectReference)
		lh := &labHost{topo: h, ref: ref, driverActive: h.hasDriver()}
		lab.hosts[h.Name] = lh
		lab.hostByRef[ref] = lh
		hostObjs[h.Name] = object.NewHostSystem(c, ref)
	}

	phase.mark("hosts")
	// One datastore shared by all hosts (the same directory mounted on each), as vcsim's own model does.
	var dsRef types.ManagedObjectReference
	for _, h := range topo.Hosts {
		hs := simulator.Map.Get(hostObjs[h.Name].Reference()).(*simulator.HostSystem)
		dss := object.NewHostDatastoreSystem(c, *hs.ConfigManager.DatastoreSystem)
		ds, err := dss.CreateLocalDatastore(ctx, topo.Datastore, dsDir)
		if err != nil {
			return nil, fmt.Errorf("datastore %s on %s: %w", topo.Datastore, h.Name, err)
		}
		dsRef = ds.Reference()
	}
	ds := simulator.Map.Get(dsRef).(*simulator.Datastore)
	ds.Summary.Capacity = labDatastoreCapacity
	ds.Summary.FreeSpace = labDatastoreCapacity
	info := ds.Info.GetDatastoreInfo()
	info.FreeSpace = labDatastoreCapacity
	info.MaxFileSize = labDatastoreCapacity
	info.MaxVirtualDiskCapacity = labDatastoreCapacity

	for _, h := range topo.Hosts {
		lh := lab.hosts[h.Name]
		lh.seed(simulator.Map.Get(lh.ref).(*simulator.HostSystem))
	}
	simulator.Map.AddHandler(&taskHook{lab: lab})
	phase.mark("datastore+gpu config")

	dcObj := simulator.Map.Get(dc.Reference()).(*simulator.Datacenter)
	netRef := dcObj.Network[0] // "VM Network", created with every datacenter
	netName := simulator.Map.Get(netRef).(mo.Entity).Entity().Name

	clusterObj := simulator.Map.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
	pool := object.NewResourcePool(c, *clusterObj.ResourcePool)
	for _, v := range topo.Vms {
		if err := createVM(ctx, c, folders.VmFolder, pool, hostObjs[v.Host], topo.Datastore, dsRef, netRef, netName, v); err != nil {
			return nil, fmt.Errorf("vm %s: %w", v.Name, err)
		}
	}

	phase.mark("vms")
	// Wrap the cluster's EnvironmentBrowser (VMs in the cluster share it) for QueryConfigTarget.
	eb := simulator.Map.Get(*clusterObj.EnvironmentBrowser).(*simulator.EnvironmentBrowser)
	simulator.Map.Put(&envBrowser{EnvironmentBrowser: *eb, lab: lab, hosts: append([]types.ManagedObjectReference{}, clusterObj.Host...)})

	lmRef := *c.ServiceContent.LicenseManager
	lm := simulator.Map.Get(lmRef).(*simulator.LicenseManager)
	simulator.Map.Put(&licenseManager{LicenseManager: *lm})
	lab.licenseManager = lmRef
	lam := &licenseAssignmentManager{lab: lab, assigned: map[string]assignment{}}
	lam.Self = *lm.LicenseAssignmentManager
	simulator.Map.Put(lam)

	// vCenter advanced settings the product manages (vpxd default: vGPU vMotion off).
	om := simulator.Map.OptionManager()
	om.Setting = append(om.Setting, &types.OptionValue{Key: "vgpu.hotmigrate.enabled", Value: false})

	return lab, nil
}

func createVM(ctx context.Context, c *vim25.Client, folder *object.Folder, pool *object.ResourcePool,
	host *object.HostSystem, dsName string, dsRef, netRef types.ManagedObjectReference, netName string, v VM) error {
	guestID := v.GuestID
	if guestID == "" {
		guestID = string(types.VirtualMachineGuestOsIdentifierUbuntu64Guest)
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef,
		fmt.Sprintf("[%s] %s/%s.vmdk", dsName, v.Name, v.Name))
	disk.CapacityInKB = vmDiskKB
	devices = append(devices, disk)
	backing := &types.VirtualEthernetCardNetworkBackingInfo{
		VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: netName},
		Network:                        &netRef,
	}
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return err
	}
	nic.GetVirtualDevice().Key = 4000 // as ESXi numbers the first NIC
	devices = append(devices, nic)
	change, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{
		Name:         v.Name,
		GuestId:      guestID,
		NumCPUs:      int32(v.NumCpus),
		MemoryMB:     int64(v.MemoryMB),
		Firmware:     string(types.GuestOsDescriptorFirmwareTypeEfi),
		Version:      vmHardwareVersion,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", dsName)},
		DeviceChange: change,
	}
	res, err := taskResult(folder.CreateVM(ctx, spec, pool, host))
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, res.(types.ManagedObjectReference))
	if v.Template {
		return vm.MarkAsTemplate(ctx)
	}
	if v.PowerState == "poweredOn" {
		_, err = taskResult(vm.PowerOn(ctx))
	}
	return err
}

// phaseTimer logs how long each part of the inventory build took (startup must stay in seconds).
type phaseTimer struct {
	start, last time.Time
	parts       []string
}

func newPhaseTimer() *phaseTimer {
	now := time.Now()
	return &phaseTimer{start: now, last: now}
}

func (p *phaseTimer) mark(name string) {
	now := time.Now()
	p.parts = append(p.parts, fmt.Sprintf("%s=%.2fs", name, now.Sub(p.last).Seconds()))
	p.last = now
}

func (p *phaseTimer) done() {
	log.Printf("inventory built in %.2fs (%s)", time.Since(p.start).Seconds(), strings.Join(p.parts, " "))
}
