"""The project's services, between the command line and the builders: locking, one plan of a
build, building, images, running a model, weights. A command parses its flags, calls one
service and prints; nothing here parses flags."""
