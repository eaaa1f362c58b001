"""Ray for sweeps and studies: `session` (joining or starting Ray, resources per run, the plugins a task
loads) and `recorder` (the one writer of the run store on the driver, and the proxy a worker records into)."""
