// Command vcsim is the embedded lab's vCenter: govmomi's vCenter simulator (vcsim) reshaped from the lab
// topology (hosts with NVIDIA GPUs and ConnectX NICs, vGPU profiles, graphics managers), served over
// HTTPS with the lab CA's certificate, plus the /lab/ admin endpoints the other lab faces use.
//
//	vcsim -listen 127.0.0.1:8989 -cert server.pem -key server.key -topology topology.json \
//	      -username U -password P [-datastore-dir DIR]
//
// The password may come from $GPUFLEET_VCSIM_PASSWORD instead of -password (keeps it off the process list).
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

const passwordEnv = "GPUFLEET_VCSIM_PASSWORD"

type options struct {
	listen, cert, key, topology, username, password, datastoreDir, events string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8989", "loopback address:port to serve HTTPS on")
	flag.StringVar(&o.cert, "cert", "", "server certificate (PEM, may include the chain)")
	flag.StringVar(&o.key, "key", "", "server private key (PEM)")
	flag.StringVar(&o.topology, "topology", "", "lab topology JSON (lab/topology.py write_topology)")
	flag.StringVar(&o.username, "username", "", "vCenter and /lab/ user")
	flag.StringVar(&o.password, "password", "", "vCenter and /lab/ password")
	flag.StringVar(&o.datastoreDir, "datastore-dir", "", "parent directory for the datastore's files (default: /dev/shm, else the system temp dir)")
	flag.StringVar(&o.events, "events", "", "the lab's events log (JSON lines): maintenance transitions are appended to it as they happen")
	flag.Parse()
	if o.password == "" {
		o.password = os.Getenv(passwordEnv)
	}
	return o
}

func (o options) validate() error {
	for name, val := range map[string]string{"-cert": o.cert, "-key": o.key, "-topology": o.topology,
		"-username": o.username, "-password (or $" + passwordEnv + ")": o.password} {
		if val == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %v", o.listen, err)
	}
	// The lab only ever listens on loopback.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %q: only loopback addresses (127.x, ::1, localhost) are allowed", o.listen)
	}
	return nil
}

func run(o options) error {
	start := time.Now()
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return fmt.Errorf("-cert/-key: %w", err)
	}
	topo, err := loadTopology(o.topology)
	if err != nil {
		return err
	}
	// The datastore holds a few empty files per VM; on tmpfs a 2,000-VM lab starts several times faster.
	parent := o.datastoreDir
	if parent == "" {
		parent = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			parent = "/dev/shm"
		}
	}
	// The pid in the name lets the lab tell a live vcsim's datastore from one left by a killed vcsim.
	dsDir, err := os.MkdirTemp(parent, fmt.Sprintf("vcsim-ds-%d-", os.Getpid()))
	if err != nil {
		return fmt.Errorf("-datastore-dir: %w", err)
	}
	defer os.RemoveAll(dsDir)

	// An empty VPX model: the service instance only; the inventory comes from the topology.
	model := simulator.VPX()
	model.Datacenter, model.Portgroup, model.Host, model.Cluster = 0, 0, 0, 0
	model.ClusterHost, model.Datastore, model.Machine, model.Autostart = 0, 0, 0, false
	// vcsim presents vCenter 6.5 (still in v0.52); clients then negotiate the 6.5 API, which has no vGPU capabilities,
	// Dynamic DirectPath or PVRDMA protocols. The lab's vCenter is 8.0 U2 (vGPU 17 / NVAIE 5 support it).
	about := &model.ServiceContent.About
	about.Version, about.Build, about.ApiVersion = "8.0.2", "22385739", "8.0.2.0"
	about.FullName = "VMware vCenter Server 8.0.2 build-22385739"
	about.LicenseProductVersion = "8.0"
	if err := model.Create(); err != nil {
		return err
	}
	defer model.Remove()

	lab, err := buildLab(context.Background(), model, topo, dsDir)
	if err != nil {
		return err
	}
	lab.eventsFile = o.events

	model.Service.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.username, o.password)}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	model.Service.ServeMux = http.NewServeMux()
	model.Service.ServeMux.Handle("/lab/", lab.adminHandler(o.username, o.password))
	server := model.Service.NewServer()
	defer server.Close()

	fmt.Printf("vcsim ready url=https://%s/sdk hosts=%d vms=%d startup_s=%.2f\n",
		o.listen, len(topo.Hosts), len(topo.Vms), time.Since(start).Seconds())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	sig := <-stop
	fmt.Printf("vcsim stopping on %s\n", sig)
	return nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	o := parseFlags()
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: %v\n", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: %v\n", err)
		os.Exit(1)
	}
}
