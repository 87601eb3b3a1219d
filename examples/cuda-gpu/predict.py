"""Doubles an n-by-64 matrix on the GPU through CUDA's driver API and sums it.

The driver (libcuda.so.1, and the PTX compiler it uses) is the host's, passed in by
`--gpus`; the CUDA runtime (libcudart.so.12) comes from NVIDIA's wheel, found through the
image's LD_LIBRARY_PATH. Without a driver the same sum is computed on the CPU.
"""

import ctypes

from cog import BasePredictor, Input

# out[i] = k * inp[i] for i < n; one thread per element. Any GPU from sm_50 on JIT-compiles it.
PTX = b"""
.version 6.0
.target sm_50
.address_size 64

.visible .entry scale(.param .u64 out, .param .u64 inp, .param .u32 n, .param .f32 k)
{
    .reg .pred %p;
    .reg .b32 %r<5>;
    .reg .f32 %f<3>;
    .reg .b64 %rd<6>;

    ld.param.u64 %rd1, [out];
    ld.param.u64 %rd2, [inp];
    ld.param.u32 %r1, [n];
    ld.param.f32 %f1, [k];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r2, %r2, %r3, %r4;
    setp.ge.u32 %p, %r2, %r1;
    @%p bra DONE;
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    mul.wide.u32 %rd3, %r2, 4;
    add.s64 %rd4, %rd2, %rd3;
    ld.global.f32 %f2, [%rd4];
    mul.f32 %f2, %f2, %f1;
    add.s64 %rd5, %rd1, %rd3;
    st.global.f32 [%rd5], %f2;
DONE:
    ret;
}
"""
CC_MAJOR, CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}


def _check(result: int, call: str) -> None:
    if result != 0:
        raise RuntimeError(f"{call} failed: CUDA error {result}")


class Gpu:
    """A context on device 0 with the `scale` kernel loaded."""

    def __init__(self, cuda: ctypes.CDLL) -> None:
        self.cuda = cuda
        _check(cuda.cuInit(0), "cuInit")
        self.device = ctypes.c_int()
        _check(cuda.cuDeviceGet(ctypes.byref(self.device), 0), "cuDeviceGet")
        name = ctypes.create_string_buffer(256)
        _check(cuda.cuDeviceGetName(name, 256, self.device), "cuDeviceGetName")
        self.name = name.value.decode()
        major, minor = ctypes.c_int(), ctypes.c_int()
        cuda.cuDeviceGetAttribute(ctypes.byref(major), CC_MAJOR, self.device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), CC_MINOR, self.device)
        self.capability = f"{major.value}.{minor.value}"
        context, module = ctypes.c_void_p(), ctypes.c_void_p()
        _check(
            cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), self.device),
            "cuDevicePrimaryCtxRetain",
        )
        _check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        _check(cuda.cuModuleLoadData(ctypes.byref(module), PTX), "cuModuleLoadData")
        self.kernel = ctypes.c_void_p()
        _check(
            cuda.cuModuleGetFunction(ctypes.byref(self.kernel), module, b"scale"),
            "cuModuleGetFunction",
        )

    def scale(self, values: list[float], k: float) -> list[float]:
        cuda, n = self.cuda, len(values)
        size = ctypes.c_size_t(4 * n)
        host = (ctypes.c_float * n)(*values)
        inp, out = ctypes.c_uint64(), ctypes.c_uint64()
        _check(cuda.cuMemAlloc_v2(ctypes.byref(inp), size), "cuMemAlloc")
        _check(cuda.cuMemAlloc_v2(ctypes.byref(out), size), "cuMemAlloc")
        try:
            _check(cuda.cuMemcpyHtoD_v2(inp, host, size), "cuMemcpyHtoD")
            count, factor = ctypes.c_uint32(n), ctypes.c_float(k)
            args = (ctypes.c_void_p * 4)(
                *(ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in (out, inp, count, factor))
            )
            block = 256
            grid = (n + block - 1) // block
            _check(
                cuda.cuLaunchKernel(self.kernel, grid, 1, 1, block, 1, 1, 0, None, args, None),
                "cuLaunchKernel",
            )
            _check(cuda.cuCtxSynchronize(), "cuCtxSynchronize")
            result = (ctypes.c_float * n)()
            _check(cuda.cuMemcpyDtoH_v2(result, out, size), "cuMemcpyDtoH")
            return list(result)
        finally:
            cuda.cuMemFree_v2(inp)
            cuda.cuMemFree_v2(out)


def _runtime_version() -> str:
    """The CUDA runtime from NVIDIA's wheel, as it reports itself (e.g. 12.4)."""
    try:
        cudart = ctypes.CDLL("libcudart.so.12")
    except OSError:
        return "none"
    version = ctypes.c_int()
    cudart.cudaRuntimeGetVersion(ctypes.byref(version))
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.runtime = _runtime_version()
        try:
            self.gpu: Gpu | None = Gpu(ctypes.CDLL("libcuda.so.1"))
        except OSError:  # no driver: this machine has no GPU, or it was not passed in
            self.gpu = None

    def predict(
        self, n: int = Input(description="rows of the 64-column input matrix", default=64)
    ) -> str:
        values = [float(i) for i in range(n * 64)]
        doubled = self.gpu.scale(values, 2.0) if self.gpu else [2.0 * v for v in values]
        total = sum(doubled)  # 2 * (0 + 1 + ... + 64n-1), exact: every element is a small integer
        where = f"device={self.gpu.name} cc={self.gpu.capability}" if self.gpu else "device=cpu"
        return f"cuda={self.gpu is not None} {where} cudart={self.runtime} sum={total:.0f}"
