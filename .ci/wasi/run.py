"""Runs the WASI build of wasi-count under wasmtime with a fresh, empty
data directory as its home and CLEARCOUNT_DIR; checks that it exits 0,
says telemetry is unsupported, and leaves the directory empty."""
import os
import sys
import tempfile

try:
    import wasmtime
except ImportError:
    sys.exit("needs wasmtime: python3 -m pip install wasmtime")

wasm = sys.argv[1]
with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as out:
    stdout = os.path.join(out, "stdout")
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, wasm)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["wasi-count"]
    wasi.env = [["HOME", "/data"], ["CLEARCOUNT_DIR", "/data"], ["XDG_CONFIG_HOME", "/data"]]
    wasi.preopen_dir(data, "/data")
    wasi.stdout_file = stdout
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    code = 0
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    said = open(stdout).read()
    print(said, end="")
    left = [os.path.join(r, f) for r, ds, fs in os.walk(data) for f in fs + ds]
    problems = []
    if code != 0:
        problems.append(f"exit status {code}")
    if "mode=off" not in said or "file=None" not in said:
        problems.append("telemetry did not stay off")
    if "not supported on this platform" not in said:
        problems.append("no word that the platform is unsupported")
    if left:
        problems.append(f"files written: {left}")
    if problems:
        sys.exit("wasi-count: " + "; ".join(problems))
    print("wasi-count: built, ran, counted nothing, wrote nothing")
