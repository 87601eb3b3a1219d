"""The one sandbox every foreign process runs in: the jail's policy (`jail`), its seccomp filter
(`seccomp`), a network of its own (`network`), writable roots over read-only layers
(`overlay`), the host's GPUs bound in (`gpu`), and a built model's run (`model`)."""
