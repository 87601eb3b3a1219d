"""The command line, its services and the doctor, run as a user runs them."""
