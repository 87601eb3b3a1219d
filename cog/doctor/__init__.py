"""`cog doctor`'s checks and fixes, beside the project's services: `model` (what a check, a
finding and the project it reads are), `runner` (the checks in order, and `--fix` between them),
`config_checks`, `python_checks` and `environment_checks` (the checks of cog.yaml, of the
predictor's code and of this host), `fixes` (the rewrites of predictor code) and `python_source`
(parsed Python with byte-exact edits). The command line parses the flags and prints."""
