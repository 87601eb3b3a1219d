"""Where `pip install` puts packages for the model: a site directory on the image's root.

The model's environment is a store path, read-only and registered, so pip must never write
there. In Cog's images pip installs into `/usr/local/lib/pythonX.Y/site-packages` (the
python:X.Y-slim layout); here too: the model environment carries

- a `pip.conf` (pip reads the one at `sys.prefix`: this environment's pip alone, never the
  runtime's) whose install prefix is `/usr/local`, so packages land in that directory and
  their scripts in `/usr/local/bin`, in the root layer of the `run:` step that ran pip (or in
  the container's own layer at run time);
- a `.pth` that puts that directory on the model's `sys.path`, ahead of the environment's own
  packages, as a later `pip install` in Cog replaces what requirements installed, and reads
  the `.pth` files there (editable installs, namespace packages).

A `.pth` rather than PYTHONPATH: only the model's interpreter reads it, so the runtime's
environment (the server) never meets the model's packages, and `python -I` keeps it.
`pip install --target` or `--user`, which pip refuses beside a configured prefix, work with
`PIP_CONFIG_FILE=/dev/null`.
"""

from __future__ import annotations

from pathlib import Path

PTH = "00-cog-root-site.pth"
PIP_CONF = """\
[global]
disable-pip-version-check = true

[install]
prefix = /usr/local
"""


def site_dir(python: str) -> str:
    """The site directory on the root for Python `python` (X.Y)."""
    return f"/usr/local/lib/python{python}/site-packages"


def pth_line(python: str, env_site: str) -> str:
    """A `.pth` import line: the root's site directory read (its own `.pth` files too) and
    put ahead of `env_site`, the environment's site-packages."""
    site = site_dir(python)
    return (
        f"import site, sys; site.addsitedir({site!r}); sys.path.remove({site!r}); "
        f"sys.path.insert(sys.path.index({env_site!r}) if {env_site!r} in sys.path else 0, "
        f"{site!r})\n"
    )


def write(env: Path, env_path: str, site_packages: str, python: str) -> None:
    """The pip configuration and the `.pth` of the environment built at `env` (its store
    path `env_path`; `site_packages` relative to it)."""
    (env / "pip.conf").write_text(PIP_CONF)
    pth = env / site_packages / PTH
    pth.write_text(pth_line(python, f"{env_path}/{site_packages}"))
