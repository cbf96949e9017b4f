// Command etcd is upstream's etcd server at the version k8s.io/kubernetes pins
// (go.etcd.io/etcd/server/v3 cannot be `go install`ed: its go.mod uses relative replaces).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
