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
	m              *simulator.Registry // the model's registry (vim25 objects)
	topo           *Topology
	hosts          map[string]*labHost
	hostByRef      map[types.ManagedObjectReference]*labHost
	guests         map[string]Guest
	instanceUUID   string
	licenseManager types.ManagedObjectReference

	assignMu sync.Mutex
	assigned map[string]string // host/pci id -> VM moref value (Dynamic DirectPath assignments)

	overrides map[types.ManagedObjectReference]mo.Reference // see override

	cloneMu sync.Mutex
	clones  map[cloneKey]*types.VirtualMachineConfigSpec // clone specs of CloneVM_Task calls not yet done

	eventsFile string // the lab's events log (-events); "": none
}

// cloneKey names a clone before it exists: source VM, destination folder, name (unique in the folder).
type cloneKey struct {
	src, folder types.ManagedObjectReference
	name        string
}

// newCtx is a locking context of its own for work outside a SOAP call (the /lab/ endpoints, the task
// fixes): vcsim's object locks are shared by everything that runs on behalf of one *simulator.Context.
func (l *Lab) newCtx() *simulator.Context {
	return &simulator.Context{Context: context.Background(), Map: l.m}
}

// takeClone is the clone spec config of the CloneVM_Task call that made dst from src (nil: none given).
func (l *Lab) takeClone(src types.ManagedObjectReference, dst *simulator.VirtualMachine) *types.VirtualMachineConfigSpec {
	if dst.Parent == nil {
		return nil
	}
	key := cloneKey{src: src, folder: *dst.Parent, name: dst.Name}
	l.cloneMu.Lock()
	defer l.cloneMu.Unlock()
	spec := l.clones[key]
	delete(l.clones, key)
	return spec
}

func (l *Lab) lookupVM(ref types.ManagedObjectReference) *simulator.VirtualMachine {
	vm, _ := l.m.Get(ref).(*simulator.VirtualMachine)
	return vm
}

// taskResult waits for a task of the in-process client and reads its outcome from the registry.
// vcsim runs tasks on their own goroutine; polling the task object (microseconds apart at first) is far
// cheaper than waiting through the property collector, thousands of times for a big lab.
func (l *Lab) taskResult(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	t, ok := l.m.Get(task.Reference()).(*simulator.Task)
	if !ok {
		return nil, fmt.Errorf("task %s not found", task.Reference())
	}
	ctx := l.newCtx()
	var info types.TaskInfo
	for pause := 20 * time.Microsecond; ; pause = min(2*pause, 5*time.Millisecond) {
		ctx.WithLock(t, func() { info = t.Info })
		if info.State == types.TaskInfoStateSuccess || info.State == types.TaskInfoStateError {
			break
		}
		time.Sleep(pause)
	}
	if info.State != types.TaskInfoStateSuccess {
		if info.Error != nil {
			return nil, fmt.Errorf("%s: %T", info.DescriptionId, info.Error.Fault)
		}
		return nil, fmt.Errorf("%s: state %s", info.DescriptionId, info.State)
	}
	return info.Result, nil
}

func buildLab(ctx context.Context, model *simulator.Model, topo *Topology, dsDir string) (*Lab, error) {
	phase := newPhaseTimer()
	defer phase.done()
	c, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return nil, err
	}
	m := model.Map()
	lab := &Lab{
		m:            m,
		topo:         topo,
		hosts:        map[string]*labHost{},
		hostByRef:    map[types.ManagedObjectReference]*labHost{},
		guests:       map[string]Guest{},
		instanceUUID: c.ServiceContent.About.InstanceUuid,
		assigned:     map[string]string{},
		overrides:    map[types.ManagedObjectReference]mo.Reference{},
		clones:       map[cloneKey]*types.VirtualMachineConfigSpec{},
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
		res, err := lab.taskResult(cluster.AddHost(ctx, types.HostConnectSpec{HostName: h.Name, Force: true}, true, nil, nil))
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		ref := res.(types.ManagedObjectReference)
		lh := &labHost{m: m, topo: h, ref: ref, driverActive: h.hasDriver()}
		lab.hosts[h.Name] = lh
		lab.hostByRef[ref] = lh
		hostObjs[h.Name] = object.NewHostSystem(c, ref)
	}

	phase.mark("hosts")
	// One datastore shared by all hosts (the same directory mounted on each), as vcsim's own model does.
	var dsRef types.ManagedObjectReference
	for _, h := range topo.Hosts {
		hs := m.Get(hostObjs[h.Name].Reference()).(*simulator.HostSystem)
		dss := object.NewHostDatastoreSystem(c, *hs.ConfigManager.DatastoreSystem)
		ds, err := dss.CreateLocalDatastore(ctx, topo.Datastore, dsDir)
		if err != nil {
			return nil, fmt.Errorf("datastore %s on %s: %w", topo.Datastore, h.Name, err)
		}
		if dsRef.Value == "" { // vcsim answers the later mounts of the same datastore with an empty moref
			dsRef = ds.Reference()
		}
	}
	ds := m.Get(dsRef).(*simulator.Datastore)
	ds.Summary.Capacity = labDatastoreCapacity
	ds.Summary.FreeSpace = labDatastoreCapacity
	info := ds.Info.GetDatastoreInfo()
	info.FreeSpace = labDatastoreCapacity
	info.MaxFileSize = labDatastoreCapacity
	info.MaxVirtualDiskCapacity = labDatastoreCapacity

	for _, h := range topo.Hosts {
		lh := lab.hosts[h.Name]
		lh.seed(m.Get(lh.ref).(*simulator.HostSystem))
	}
	m.AddHandler(&taskHook{lab: lab})
	phase.mark("datastore+gpu config")

	dcObj := m.Get(dc.Reference()).(*simulator.Datacenter)
	netRef := dcObj.Network[0] // "VM Network", created with every datacenter
	netName := m.Get(netRef).(mo.Entity).Entity().Name

	clusterObj := m.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
	pool := object.NewResourcePool(c, *clusterObj.ResourcePool)
	for _, v := range topo.Vms {
		if err := lab.createVM(ctx, c, folders.VmFolder, pool, hostObjs[v.Host], topo.Datastore, dsRef, netRef, netName, v); err != nil {
			return nil, fmt.Errorf("vm %s: %w", v.Name, err)
		}
	}

	phase.mark("vms")
	// The cluster's EnvironmentBrowser (VMs in the cluster share it) answers QueryConfigTarget with the GPUs.
	eb := m.Get(*clusterObj.EnvironmentBrowser).(*simulator.EnvironmentBrowser)
	lab.override(&envBrowser{EnvironmentBrowser: eb, lab: lab, hosts: append([]types.ManagedObjectReference{}, clusterObj.Host...)})

	lmRef := *c.ServiceContent.LicenseManager
	lm := m.Get(lmRef).(*simulator.LicenseManager)
	lab.override(&licenseManager{LicenseManager: lm})
	lab.licenseManager = lmRef
	lam := &licenseAssignmentManager{lab: lab, assigned: map[string]assignment{}}
	lam.Self = *lm.LicenseAssignmentManager
	lab.override(lam)
	m.Handler = lab.route

	// vCenter advanced settings the product manages (vpxd default: vGPU vMotion off).
	om := m.OptionManager()
	om.Setting = append(om.Setting, &types.OptionValue{Key: "vgpu.hotmigrate.enabled", Value: false})

	return lab, nil
}

func (l *Lab) createVM(ctx context.Context, c *vim25.Client, folder *object.Folder, pool *object.ResourcePool,
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
	res, err := l.taskResult(folder.CreateVM(ctx, spec, pool, host))
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, res.(types.ManagedObjectReference))
	if v.Template {
		return vm.MarkAsTemplate(ctx)
	}
	if v.PowerState == "poweredOn" {
		_, err = l.taskResult(vm.PowerOn(ctx))
	}
	return err
}

// override makes obj answer for its managed object: the SOAP calls on its moref reach obj, which embeds
// or replaces vcsim's object (methods obj does not define are vcsim's own). The registry keeps vcsim's
// object, since vcsim's code type-asserts it (e.g. *simulator.EnvironmentBrowser when a host joins the
// cluster or a VM's hardware is upgraded); obj shares its lock, as vcsim locks by moref.
func (l *Lab) override(obj mo.Reference) {
	l.overrides[obj.Reference()] = obj
}

// route is the registry's Handler, asked for the object of every SOAP call (it sees the request first).
// vcsim prefers what the caller's session resolves the moref to (Session.Get: the session's own
// registry, else the shared one) over the Handler's answer, so the lab object is also put into the
// session's registry.
func (l *Lab) route(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if req, ok := method.Body.(*types.CloneVM_Task); ok {
		// vcsim's CloneVM_Task drops the clone spec's config (extraConfig, numCPUs, memoryMB: it sets
		// them on a copy of the spec it then does not use); the clone hook applies it. The latest call
		// for a source, folder and name wins (a failed clone's entry is replaced by the next one's).
		l.cloneMu.Lock()
		l.clones[cloneKey{src: req.This, folder: req.Folder, name: req.Name}] = req.Spec.Config
		l.cloneMu.Unlock()
	}
	obj, ok := l.overrides[method.This]
	if !ok {
		return nil, nil
	}
	if s := ctx.Session; s != nil && s.Registry != nil && s.Registry.Get(method.This) == nil {
		s.Registry.Put(obj)
	}
	return obj, nil
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
