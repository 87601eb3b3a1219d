"""The seccomp filter every sandboxed process runs under: a classic BPF program for bubblewrap's
`--seccomp FD`.

Capabilities are dropped already (builders.sandbox.jail), so most of what is refused here would fail
anyway; the filter is the second wall, as Docker's default profile is: the calls that change
mounts or namespaces, load kernel code, reach the kernel keyring or pin kernel objects are
refused with EPERM whatever the caller holds, and so are TIOCSTI/TIOCLINUX (typing into the
terminal a sandbox shares with the user). Calls of another ABI (32-bit int 0x80, x32), which a
filter written for the native numbers would let through, are refused whole.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# The calls refused: each architecture's table below names the same ones.
_NEW_MOUNT_API = {"open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431}
_NEW_MOUNT_API |= {"fsmount": 432, "fspick": 433, "mount_setattr": 442}


@dataclass(frozen=True)
class _Arch:
    audit: int  # AUDIT_ARCH_* as seccomp_data.arch reports it
    numbers: dict[str, int]  # the calls refused, by name
    ioctl: int
    x32: bool  # syscall numbers at or above 0x40000000 are the x32 ABI


_ARCHES = {
    "x86_64": _Arch(
        0xC000003E,
        {
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "unshare": 272,
            "setns": 308,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "acct": 163,
            "quotactl": 179,
        }
        | _NEW_MOUNT_API,
        ioctl=16,
        x32=True,
    ),
    "aarch64": _Arch(
        0xC00000B7,
        {
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "unshare": 97,
            "setns": 268,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "acct": 89,
            "quotactl": 60,
        }
        | _NEW_MOUNT_API,
        ioctl=29,
        x32=False,
    ),
}
_ARCHES["arm64"] = _ARCHES["aarch64"]

TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# Classic BPF opcodes, and seccomp's return values.
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW, _DENY = 0x7FFF0000, 0x00050000 | errno.EPERM
# Offsets in struct seccomp_data: nr, arch, then args[] from 16 (8 bytes each, the low word
# first on these little-endian machines).
_NR, _ARCH, _ARG1_LOW = 0, 4, 24


def program(machine: str | None = None) -> bytes:
    """The filter for `machine` (default: this one), as the bytes of a `sock_filter` array;
    ValueError for an architecture without a table here."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        raise ValueError(f"no seccomp table for {machine or platform.machine()}")
    # (opcode, jump-if-true label, jump-if-false label, k); labels are resolved below.
    code: list[tuple[int, str | None, str | None, int]] = [
        (_LD_ABS, None, None, _ARCH),
        (_JEQ, None, "deny", arch.audit),
        (_LD_ABS, None, None, _NR),
    ]
    if arch.x32:
        code.append((_JGE, "deny", None, 0x40000000))
    code += [(_JEQ, "deny", None, number) for number in arch.numbers.values()]
    code += [
        (_JEQ, None, "allow", arch.ioctl),
        (_LD_ABS, None, None, _ARG1_LOW),
        (_JEQ, "deny", None, TIOCSTI),
        (_JEQ, "deny", None, TIOCLINUX),
    ]
    labels = {"allow": len(code), "deny": len(code) + 1}
    code += [(_RET, None, None, _ALLOW), (_RET, None, None, _DENY)]

    def offset(at: int, label: str | None) -> int:
        return 0 if label is None else labels[label] - at - 1

    return b"".join(
        struct.pack("<HBBI", op, offset(i, jt), offset(i, jf), k)
        for i, (op, jt, jf, k) in enumerate(code)
    )
