"""L2 services: one module per capability. Only services open database sessions or send
tasks; entry points (tasks, the CLI, beat, the HTTP API) call them."""
