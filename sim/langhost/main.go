// pulumi-language-nodejs for the e2e tier.
//
// The upstream language host (module github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3)
// is not served by the Go module proxy this project can reach, so sim/toolchain.sh builds this
// small one instead, against the same github.com/pulumi/pulumi/sdk/v3 as the CLI. It implements the
// part of the LanguageRuntime service that `pulumi preview/up/destroy` of a TypeScript program use:
// it reports the resource plugins of the program's node_modules and runs the program with the
// @pulumi/pulumi SDK's own entry point (node_modules/@pulumi/pulumi/cmd/run) with the project's
// runtime options (typescript, tsconfig, nodeargs), as upstream does. Dependency installation, code generation and packing are not
// implemented (the e2e tests run `npm ci` themselves).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const version = "3.248.0-e2e"

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	tracing       string
}

func main() {
	// The engine passes optional flags (--logtostderr, -v=N, --tracing X) and then the engine
	// address as the last positional argument.
	h := &host{}
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--tracing" || a == "-tracing":
			if i+1 < len(args) {
				h.tracing = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "-"):
		default:
			h.engineAddress = a
		}
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "listen: %v\n", err)
		os.Exit(1)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(400 * 1024 * 1024))
	pulumirpc.RegisterLanguageRuntimeServer(srv, h)
	fmt.Printf("%d\n", lis.Addr().(*net.TCPAddr).Port)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; srv.Stop() }()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(1)
	}
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// pulumiPackage is a node_modules package that ships a Pulumi resource plugin.
type pulumiPackage struct{ name, version, server string }

// resourcePackages lists node_modules/<pkg>/package.json and node_modules/@scope/<pkg>/package.json
// with "pulumi": {"resource": true}, the same rule the upstream host applies (top level only).
func resourcePackages(dir string) ([]pulumiPackage, error) {
	nm := findUp(dir, "node_modules")
	if nm == "" {
		return nil, nil
	}
	var pkgJSONs []string
	entries, err := os.ReadDir(nm)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "@") {
			sub, _ := os.ReadDir(filepath.Join(nm, e.Name()))
			for _, s := range sub {
				pkgJSONs = append(pkgJSONs, filepath.Join(nm, e.Name(), s.Name(), "package.json"))
			}
		} else {
			pkgJSONs = append(pkgJSONs, filepath.Join(nm, e.Name(), "package.json"))
		}
	}
	var out []pulumiPackage
	for _, p := range pkgJSONs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var info struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Pulumi  struct {
				Resource bool   `json:"resource"`
				Name     string `json:"name"`
				Version  string `json:"version"`
				Server   string `json:"server"`
			} `json:"pulumi"`
		}
		if json.Unmarshal(b, &info) != nil || !info.Pulumi.Resource {
			continue
		}
		name := info.Pulumi.Name
		if name == "" {
			name = strings.TrimPrefix(strings.TrimPrefix(info.Name, "@pulumi/"), "@")
		}
		v := info.Pulumi.Version
		if v == "" {
			v = info.Version
		}
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		out = append(out, pulumiPackage{name: name, version: v, server: info.Pulumi.Server})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func programDir(info *pulumirpc.ProgramInfo, pwd string) string {
	if info != nil && info.GetProgramDirectory() != "" {
		return info.GetProgramDirectory()
	}
	if pwd != "" {
		return pwd
	}
	d, _ := os.Getwd()
	return d
}

func (h *host) GetRequiredPlugins(_ context.Context, req *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	pkgs, err := resourcePackages(programDir(req.GetInfo(), req.GetPwd()))
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, p := range pkgs {
		resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{Name: p.name, Kind: "resource", Version: p.version, Server: p.server})
	}
	return resp, nil
}

func (h *host) GetRequiredPackages(_ context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	pkgs, err := resourcePackages(programDir(req.GetInfo(), ""))
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range pkgs {
		resp.Packages = append(resp.Packages, &pulumirpc.PackageDependency{Name: p.name, Kind: "resource", Version: p.version, Server: p.server})
	}
	return resp, nil
}

func (h *host) GetProgramDependencies(context.Context, *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, err
	}
	out, _ := exec.Command(node, "--version").Output()
	return &pulumirpc.AboutResponse{Executable: node, Version: strings.TrimSpace(string(out))}, nil
}

// InstallDependencies is a no-op: the tests install node_modules themselves.
func (h *host) InstallDependencies(_ *pulumirpc.InstallDependenciesRequest, _ grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	return nil
}

func findUp(dir, name string) string {
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

func optionString(opts *structpb.Struct, key string) (string, bool) {
	if opts == nil {
		return "", false
	}
	v, ok := opts.GetFields()[key]
	if !ok {
		return "", false
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue, true
	case *structpb.Value_BoolValue:
		return fmt.Sprint(k.BoolValue), true
	case *structpb.Value_NumberValue:
		return fmt.Sprint(k.NumberValue), true
	}
	return "", false
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	dir := programDir(info, req.GetPwd())
	runPath := findUp(dir, filepath.Join("node_modules", "@pulumi", "pulumi", "cmd", "run"))
	if runPath == "" {
		return &pulumirpc.RunResponse{Error: "the Pulumi SDK is not installed under " + dir + " (run npm ci)"}, nil
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "node is not on PATH"}, nil
	}

	var nodeArgs []string
	if s, ok := optionString(info.GetOptions(), "nodeargs"); ok && s != "" {
		nodeArgs = strings.Fields(s)
	}
	args := append(nodeArgs, runPath)
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	if info != nil {
		add("root-directory", info.GetRootDirectory())
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 0 {
		add("parallel", fmt.Sprint(req.GetParallel()))
	}
	add("tracing", h.tracing)
	program := "."
	if info != nil && info.GetEntryPoint() != "" {
		program = info.GetEntryPoint()
	} else if req.GetProgram() != "" {
		program = req.GetProgram()
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	cfg := req.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	env := os.Environ()
	env = append(env, "PULUMI_CONFIG="+string(cfgJSON), "PULUMI_CONFIG_SECRET_KEYS="+string(secretJSON))
	typescript := "true"
	if s, ok := optionString(info.GetOptions(), "typescript"); ok {
		typescript = s
	}
	env = append(env, "PULUMI_NODEJS_TYPESCRIPT="+typescript)
	if s, ok := optionString(info.GetOptions(), "tsconfig"); ok && s != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+s)
	}

	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = req.GetPwd()
	if cmd.Dir == "" {
		cmd.Dir = dir
	}
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			// The SDK's run script exits with 32 after it has already reported the error itself.
			if exitErr.ExitCode() == 32 {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run node: %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}
