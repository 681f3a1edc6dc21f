"""Team mode: the servers on one machine, work pools and deployments, child process groups."""
