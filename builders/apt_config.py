"""apt's configuration in the image: where it fetches from, and how it runs in a build step.

Its sources are the channel's archives, the ones cog.lock was resolved from (Debian's own
mirror unless the channel names another: a snapshot.debian.org URL freezes them), in the
deb822 file Debian's own images carry. Each is checked against the channel's keyring, as at
lock time, but a release past its Valid-Until is still read: a rebuild from the lock must be
able to read the archive the lock saw.

The settings are what a `run:` step's sandbox needs: it maps root alone, so apt cannot drop
to its `_apt` user for downloads; and what keeps a step's log and layer free of noise: no
translation indexes, no progress bars. The lists and caches apt leaves are not kept in the
step's layer (builders.run_step), as Cog's images remove them.
"""

from __future__ import annotations

from pathlib import Path

from cuda_channels.channel import Channel

SOURCES = "etc/apt/sources.list.d/debian.sources"
SETTINGS = "etc/apt/apt.conf.d/50cog"
_SETTINGS = """\
// A build step's sandbox maps root alone: apt downloads as root, not as _apt.
APT::Sandbox::User "root";
// The Packages indexes only: no translations to fetch or keep.
Acquire::Languages "none";
// No progress bars in a build's log.
Dpkg::Use-Pty "false";
"""


def sources(channel: Channel) -> str:
    """The channel's archives as deb822 sources."""
    stanzas = [
        "\n".join(
            (
                "Types: deb",
                f"URIs: {archive.mirror}",
                f"Suites: {' '.join(archive.suites)}",
                f"Components: {' '.join(archive.components)}",
                f"Signed-By: {channel.keyring}",
                "Check-Valid-Until: no",
            )
        )
        for archive in channel.archives
    ]
    return "\n\n".join(stanzas) + "\n"


def write(tree: Path, deb822: str) -> None:
    """apt's sources and settings, in the layer `tree`."""
    for rel, text in ((SOURCES, deb822), (SETTINGS, _SETTINGS)):
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)
