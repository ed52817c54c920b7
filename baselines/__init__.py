"""Method plugins: each module registers one method with `bench.plugins.register_method`."""
