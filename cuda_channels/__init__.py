"""Channels: pinned, versioned data (CUDA/torch compatibility, Python sources, OS package sets).

Empty until the channels issue lands; the package exists so the layout matches DESIGN.md.
"""
