// VMware's vCenter simulator (govmomi's simulator package, from Debian's
// golang-github-vmware-govmomi-dev) on loopback, over TLS, for Vela's vmware store tests.
// Built by scripts/vcsim.sh in GOPATH mode with Debian's golang-go; nothing is downloaded.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	user := flag.String("user", "vela", "the one user name accepted")
	pass := flag.String("password", "vela-vcsim-pw", "its password")
	portFile := flag.String("port-file", "", "where to write the port once listening")
	flag.Parse()

	model := simulator.VPX() // datacenter DC0, datastore LocalDS_0
	defer model.Remove()
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	server := model.Service.NewServer()
	defer server.Close()
	fmt.Println("vcsim listening on", server.URL.Host)
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(server.URL.Port()+"\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "vcsim:", err)
			os.Exit(1)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
