package sluice

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/wire"
)

const modulePath = "github.com/sluicehq/sluice"

// sdkVersion is the module version this binary was built with ("devel"
// inside the module itself).
var sdkVersion = sync.OnceValue(func() string { return versionFrom(debug.ReadBuildInfo()) })

// versionFrom finds the module's version in a binary's build info.
func versionFrom(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "devel"
	}
	if bi.Main.Path == modulePath {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		return "devel"
	}
	for _, d := range bi.Deps {
		if d.Path == modulePath {
			return d.Version
		}
	}
	return "devel"
}

type workerTelemetry struct {
	Language    string `json:"language,omitzero"`
	ProjectName string `json:"project_name,omitzero"`
	Framework   string `json:"framework"`
}

// workerInfo is the input of engine::workers::register, shaped like the
// official SDKs' (engine::workers::list hides workers without a pid).
type workerInfo struct {
	Runtime     string          `json:"runtime"`
	Version     string          `json:"version"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitzero"`
	OS          string          `json:"os"`
	PID         int             `json:"pid"`
	Isolation   string          `json:"isolation,omitzero"`
	Telemetry   workerTelemetry `json:"telemetry"`
}

// workerInfoMessage is the void engine::workers::register call that ends
// every replay.
func (c *Client) workerInfoMessage() []byte {
	info := workerInfo{
		Runtime:     "go",
		Version:     sdkVersion(),
		Name:        c.workerName(),
		Description: c.cfg.description,
		OS:          osString(),
		PID:         os.Getpid(),
		Isolation:   os.Getenv("III_ISOLATION"),
		Telemetry: workerTelemetry{
			Language:    language(),
			ProjectName: os.Getenv("III_PROJECT_NAME"),
			Framework:   "sluice-go",
		},
	}
	data, _ := marshalJSON(info)
	b, _ := wire.Marshal(&wire.Message{
		Type:       wire.TypeInvokeFunction,
		FunctionID: wire.FnWorkersRegister,
		Data:       data,
		Action:     &wire.Action{Type: wire.ActionVoid},
	})
	return b
}

func (c *Client) workerName() string {
	if c.cfg.name != "" {
		return c.cfg.name
	}
	if n := os.Getenv("III_WORKER_NAME"); n != "" {
		return n
	}
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// osString mirrors Node's "platform release (arch)", e.g. "linux 6.8.0 (amd64)".
func osString() string {
	s := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		s += " " + strings.TrimSpace(string(b))
	}
	return s + " (" + runtime.GOARCH + ")"
}

// language turns the POSIX locale ("en_US.UTF-8") into a BCP 47 tag
// ("en-US"), as Node reports Intl's locale.
func language() string {
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v := os.Getenv(k)
		if v == "" || v == "C" || v == "POSIX" || strings.HasPrefix(v, "C.") {
			continue
		}
		v, _, _ = strings.Cut(v, ".")
		v, _, _ = strings.Cut(v, "@")
		return strings.ReplaceAll(v, "_", "-")
	}
	return "en-US"
}
