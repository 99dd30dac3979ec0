package main

// Licensing as vCenter does it, answered in place of vcsim's LicenseManager.AddLicense and
// LicenseAssignmentManager (see Lab.override). vcsim accepts any string as a key and stores it without
// edition or capacity; its UpdateAssignedLicense answers an unknown entity with neither a result nor a
// fault and an unknown key with InvalidArgument, and it lists clusters and names vCenter "vcsim". vCenter
// rejects a malformed key (InvalidLicense), faults an unknown entity (LicenseEntityNotFound) or a key not
// added (InvalidLicense), and licenses vCenter and hosts: what the product and its tests rely on.

import (
	"regexp"
	"sort"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// vSphere license keys: five groups of five characters.
var licenseKeyFormat = regexp.MustCompile(`^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$`)

// licenseManager shares vcsim's LicenseManager object (its licenses property is the one clients read).
type licenseManager struct {
	*simulator.LicenseManager
}

func (m *licenseManager) AddLicense(ctx *simulator.Context, req *types.AddLicense) soap.HasFault {
	if !licenseKeyFormat.MatchString(req.LicenseKey) {
		return &methods.AddLicenseBody{Fault_: simulator.Fault("invalid license key format",
			&types.InvalidLicense{LicenseContent: req.LicenseKey})}
	}
	for _, l := range m.Licenses {
		if l.LicenseKey == req.LicenseKey {
			return &methods.AddLicenseBody{Res: &types.AddLicenseResponse{Returnval: l}}
		}
	}
	info := simulator.EvalLicense
	info.LicenseKey = req.LicenseKey
	info.EditionKey = "esx.enterprisePlus.cpuPackage"
	info.Name = "vSphere 8 Enterprise Plus"
	info.Total = 1024
	info.CostUnit = "cpuPackage"
	info.Labels = req.Labels
	licenses := append(append([]types.LicenseManagerLicenseInfo{}, m.Licenses...), info)
	ctx.Update(m.LicenseManager, []types.PropertyChange{{Name: "licenses", Val: licenses}})
	return &methods.AddLicenseBody{Res: &types.AddLicenseResponse{Returnval: info}}
}

func findLicense(m *simulator.LicenseManager, key string) (types.LicenseManagerLicenseInfo, bool) {
	for _, l := range m.Licenses {
		if l.LicenseKey == key {
			return l, true
		}
	}
	return types.LicenseManagerLicenseInfo{}, false
}

type assignment struct {
	key, displayName string
}

type licenseAssignmentManager struct {
	mo.LicenseAssignmentManager
	lab *Lab

	mu       sync.Mutex
	assigned map[string]assignment // entity id (host moref value or vCenter instance uuid) -> license
}

func (m *licenseAssignmentManager) licenses() *simulator.LicenseManager {
	return m.lab.m.Get(m.lab.licenseManager).(*simulator.LicenseManager)
}

// entities lists every entity that carries a license: the vCenter itself and each host.
func (m *licenseAssignmentManager) entities() map[string]string {
	out := map[string]string{m.lab.instanceUUID: "vCenter Server"}
	for name, h := range m.lab.hosts {
		out[h.ref.Value] = name
	}
	return out
}

func (m *licenseAssignmentManager) UpdateAssignedLicense(ctx *simulator.Context, req *types.UpdateAssignedLicense) soap.HasFault {
	body := &methods.UpdateAssignedLicenseBody{}
	name, ok := m.entities()[req.Entity]
	if !ok {
		body.Fault_ = simulator.Fault("entity not found", &types.LicenseEntityNotFound{EntityId: req.Entity})
		return body
	}
	lm := m.licenses()
	var info types.LicenseManagerLicenseInfo
	ctx.WithLock(lm, func() { info, ok = findLicense(lm, req.LicenseKey) })
	if !ok {
		body.Fault_ = simulator.Fault("license key not added to LicenseManager",
			&types.InvalidLicense{LicenseContent: req.LicenseKey})
		return body
	}
	if req.EntityDisplayName != "" {
		name = req.EntityDisplayName
	}
	m.mu.Lock()
	m.assigned[req.Entity] = assignment{key: req.LicenseKey, displayName: name}
	m.mu.Unlock()
	body.Res = &types.UpdateAssignedLicenseResponse{Returnval: info}
	return body
}

func (m *licenseAssignmentManager) RemoveAssignedLicense(ctx *simulator.Context, req *types.RemoveAssignedLicense) soap.HasFault {
	m.mu.Lock()
	delete(m.assigned, req.EntityId)
	m.mu.Unlock()
	return &methods.RemoveAssignedLicenseBody{Res: &types.RemoveAssignedLicenseResponse{}}
}

func (m *licenseAssignmentManager) QueryAssignedLicenses(ctx *simulator.Context, req *types.QueryAssignedLicenses) soap.HasFault {
	body := &methods.QueryAssignedLicensesBody{Res: &types.QueryAssignedLicensesResponse{}}
	entities := m.entities()
	ids := make([]string, 0, len(entities))
	if req.EntityId != "" {
		if _, ok := entities[req.EntityId]; ok {
			ids = append(ids, req.EntityId)
		}
	} else {
		for id := range entities {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	lm := m.licenses()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Lock order: assignment manager (held by the SOAP call) -> license manager.
	ctx.WithLock(lm, func() {
		for _, id := range ids {
			a := assignment{key: simulator.EvalLicense.LicenseKey, displayName: entities[id]}
			if got, ok := m.assigned[id]; ok {
				a = got
			}
			info, ok := findLicense(lm, a.key)
			if !ok {
				info = simulator.EvalLicense
			}
			body.Res.Returnval = append(body.Res.Returnval, types.LicenseAssignmentManagerLicenseAssignment{
				EntityId:          id,
				EntityDisplayName: a.displayName,
				AssignedLicense:   info,
			})
		}
	})
	return body
}
