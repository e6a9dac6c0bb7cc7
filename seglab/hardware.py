"""What machine are we on, and which settings make training fast *and* correct on it.

CPUs differ more than people expect. On an Intel Sapphire Rapids core with AMX-BF16
bfloat16 autocast makes a U-Net train about 3x faster; on an AMD EPYC with AVX2 only,
the same switch makes it about 11x *slower*, because bf16 is emulated; on an Intel Xeon
that has AVX512-BF16 but no AMX, it is still 1.4x slower than fp32 for training; and on an
AMD EPYC that has AVX512-BF16 (no AMX either) the convolutions run twice as fast in bf16.
The same two flags ("bf16: yes, AMX: no") thus go either way. So seglab never guesses: it
asks PyTorch what the CPU can do and, where that does not settle it, times both.
"""
from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

from .errors import SeglabError


def get_device(name: str | None = None) -> torch.device:
    """``name`` if given ('cpu', 'cuda', 'cuda:1', 'mps'), else CUDA, then MPS, then CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_bf16_supported() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_amx_supported() -> bool:
    """True when the CPU has AMX tiles (Intel Sapphire Rapids and newer), the matrix units
    that make bf16 convolutions fast, as opposed to merely supported."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)   # it wraps torch._C._cpu's where that exists
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    return "amx_tile" in read_cpuinfo().get("flags", "").split()   # Linux, where torch cannot tell


def cpu_bf16_pays_off() -> bool:
    """Whether bf16 autocast makes convolutions faster on this CPU (see :func:`bf16_choice`)."""
    return bf16_choice()[0]


def bf16_reason() -> str:
    """Why seglab computes in fp32 or bf16 on this CPU, in one line (``seglab info``)."""
    return bf16_choice()[1]


@functools.lru_cache(maxsize=None)
def bf16_choice() -> tuple[bool, str]:
    """Whether bf16 autocast makes convolutions faster on this CPU, and why: the one speed
    choice the CPU's flags do not settle. Decided once per process (``bf16_choice.cache_clear()``
    decides again).

    - no native bf16 (AVX2): False, never timed (emulated, about 11x slower);
    - AMX: True (about 3x faster for a U-Net; on a 2-core Intel Xeon with AMX, x86 family 6 model
      167, the U-Net's training convolutions took 359 and 499 ms in fp32, 93 and 88 ms in bf16);
    - native bf16 without AMX: measured (about 0.2 s): a small convolution block, forward and
      backward, in fp32 and under bf16 autocast; bf16 is chosen when it is at least 1.2x
      faster. Measured on 2-core CPUs of this project: Intel Xeon (AVX512-BF16) fp32 faster,
      the U-Net's training convolutions 359 vs 577 ms; AMD EPYC (AVX512-BF16) bf16 faster,
      539 vs 283 ms.

    ``SEGLAB_CPU_BF16=1`` or ``=0`` in the environment overrides the choice (to compare
    precisions, or to keep a run reproducible across days).
    """
    value = os.environ.get("SEGLAB_CPU_BF16", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True, "bf16: set by SEGLAB_CPU_BF16"
    if value in ("0", "false", "no", "off"):
        return False, "fp32: set by SEGLAB_CPU_BF16"
    if value:
        raise SeglabError(f"SEGLAB_CPU_BF16={os.environ['SEGLAB_CPU_BF16']!r} is neither on nor off: set it to 1 "
                          f"(bf16) or 0 (fp32), or unset it to let seglab time both precisions on this CPU")
    if not cpu_bf16_supported():
        return False, "fp32: no native bf16 here (bf16 would be emulated, about 11x slower)"
    if cpu_amx_supported():
        return True, "bf16: AMX matrix units"
    t = time_conv_block()
    pays = t["fp32"] >= 1.2 * t["bf16"]
    return pays, (f"{'bf16' if pays else 'fp32'}: a small convolution block took {t['fp32'] * 1e3:.1f} ms in "
                  f"fp32, {t['bf16'] * 1e3:.1f} ms in bf16 ({t['fp32'] / t['bf16']:.2f}x; bf16 needs 1.2x)")


def time_conv_block(repeats: int = 3) -> dict[str, float]:
    """Seconds for one forward and backward pass of a small channels_last convolution block
    (16 -> 32 -> 32 channels, 3x3, a batch of 8 at 64x96), best of ``repeats``, in fp32 and
    under bf16 autocast: the measurement behind :func:`bf16_choice`."""
    seconds = {}
    with torch.inference_mode(False), torch.enable_grad():   # callers may be scoring under no_grad
        generator = torch.Generator().manual_seed(0)
        block = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(32, 32, 3, padding=1)).to(memory_format=torch.channels_last)
        x = torch.randn(8, 16, 64, 96, generator=generator).to(memory_format=torch.channels_last)
        for name, enabled in (("fp32", False), ("bf16", True)):
            seconds[name] = _best_pass(block, x, enabled, repeats)
    return seconds


def _best_pass(block: torch.nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    best = float("inf")
    for attempt in range(repeats + 1):                 # the first pass is a warm-up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = block(x)
        y.float().sum().backward()
        if attempt:
            best = min(best, time.perf_counter() - start)
    return best


def read_cpuinfo(path: str | os.PathLike = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields in a Linux ``/proc/cpuinfo`` (``{}`` where there is
    none, as on macOS and Windows)."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():  # a blank line ends the first processor's block
                    break
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_info() -> dict:
    """The facts that decide CPU speed settings, printed beside every figure we report."""
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = cpu_bf16_supported()
    amx = cpu_amx_supported()
    fields = read_cpuinfo()
    model, generation = fields.get("model name", platform.processor() or ""), ""
    if "cpu family" in fields and "model" in fields:
        # x86 family/model tell apart generations that share a name and a CPU class, and can
        # differ twofold in speed (benchmarks/RESULTS.md, the AMD EPYC section).
        generation = f"x86 family {fields['cpu family']} model {fields['model']}"
    return {"model": model, "generation": generation, "capability": capability, "bf16": bf16, "amx": amx,
            "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def cpu_class() -> str:
    """A short label such as 'AMD EPYC, x86 family 26 model 2 (AVX512, bf16, no AMX, 2 cores)'
    for tables and logs: the CPU's name and generation, then the class that decides the speed
    settings ('AVX2, no bf16', 'AVX512, bf16, no AMX' or 'AVX512, bf16+AMX')."""
    info = cpu_info()
    fast = "bf16+AMX" if info["amx"] and info["bf16"] else ("bf16, no AMX" if info["bf16"] else "no bf16")
    name = ", ".join(part for part in (info["model"] or "CPU", info["generation"]) if part)
    return f"{name} ({info['capability']}, {fast}, {info['cores']} cores)"


def describe(device: torch.device | str | None = None) -> str:
    """One line naming the device: the GPU's name, or the CPU class."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU {cpu_class()}"


@dataclass
class SpeedSettings:
    """How to run the model: memory layout, autocast precision, compilation."""

    channels_last: bool = False
    amp_dtype: str | None = None      # 'bfloat16' or 'float16' under autocast, None = fp32
    compile: bool = False
    reuse_memory: bool = False        # CPU on Linux: keep freed buffers (see reuse_freed_memory)
    fold_batchnorm: bool = False      # inference: BatchNorm folded into its convolution (models.fold_batchnorm)
    cudnn_benchmark: bool = False     # CUDA: cuDNN times its convolution algorithms once per shape, keeps the fastest

    @property
    def dtype(self) -> torch.dtype | None:
        return getattr(torch, self.amp_dtype) if self.amp_dtype else None

    def as_dict(self) -> dict:
        return asdict(self)


def choose_settings(device: torch.device | str, fast: bool = True, training: bool = True) -> SpeedSettings:
    """The fastest settings we measured to be correct on ``device``.

    - CUDA: channels_last + autocast (bf16 where the GPU supports it, else fp16), and cuDNN's
      autotuner (training sees one crop size, so the one-off search per shape pays back).
    - CPU where bf16 pays (:func:`cpu_bf16_pays_off`: AMX, or native bf16 that a quick
      timing finds faster): channels_last + bf16 autocast.
    - Any other CPU: fp32 and channels_last; no bf16. Emulated on AVX2 (about 11x slower);
      with AVX512-BF16 but no AMX, measured on a 2-core Xeon with a width-16 U-Net:
      training 11 vs 16 images/s, inference (BatchNorm folded) 36 vs 43 images/s, bf16 vs
      fp32 both times (while an AMD EPYC with the same flags runs bf16 twice as fast).
    - CPU: inference with BatchNorm folded into the convolutions
      (:func:`seglab.models.fold_batchnorm`; the same numbers, one pass fewer per layer).
    - CPU on Linux: freed activation buffers are kept for the next step
      (:func:`reuse_freed_memory`) instead of being handed back to the OS.
    - ``fast=False``: plain fp32, NCHW, eager: the baseline a learner would write.

    ``training`` is accepted so that a device where training and inference differ can say
    so; on the devices measured so far both get the same settings.
    """
    device = torch.device(device)
    if not fast:
        return SpeedSettings()
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return SpeedSettings(channels_last=True, amp_dtype="bfloat16" if bf16 else "float16",
                             cudnn_benchmark=True)
    if device.type == "mps":
        return SpeedSettings()
    amp = "bfloat16" if cpu_bf16_pays_off() else None
    return SpeedSettings(channels_last=True, amp_dtype=amp, reuse_memory=_glibc() is not None,
                         fold_batchnorm=True)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (glibc malloc.h)
_GLIBC_DEFAULT = 128 * 1024                      # both thresholds' defaults
_MMAP_MAX = 32 * 1024 * 1024                     # the largest mmap threshold glibc accepts (64-bit)


def _glibc():
    """The C library as a ctypes handle when it is glibc (Linux), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Make glibc keep freed tensor buffers for reuse (``enabled``) or restore its defaults.

    A training step on the CPU allocates and frees the same large activation buffers every
    step. By default glibc serves blocks over 128 KiB with fresh ``mmap`` calls and returns
    them to the OS on ``free``, so every step pays page faults and page zeroing in the
    kernel. Raising the mmap and trim thresholds keeps those buffers in the heap for the next
    step (what jemalloc or tcmalloc would do). Measured on a 2-core AVX2 CPU: kernel time
    per step falls by about 60 % and a U-Net trains about 10 % faster. The cost: the
    process keeps its peak memory. Process-wide; returns False where it does not apply
    (not glibc) and changes nothing there.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap, trim = (_MMAP_MAX, 1 << 30) if enabled else (_GLIBC_DEFAULT, _GLIBC_DEFAULT)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))


def autocast(device: torch.device, settings: SpeedSettings):
    """``torch.autocast`` for the chosen precision, or a no-op context for fp32."""
    if settings.amp_dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=settings.dtype)
