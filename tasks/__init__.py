"""Task plugins: each module registers one or more tasks with `bench.plugins.register_task`."""
