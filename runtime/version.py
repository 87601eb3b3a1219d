"""The version of Cog whose contract this runtime serves."""

COG_VERSION = "0.23.1"
