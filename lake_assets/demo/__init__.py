"""The bundled demo: `lake.yaml` (the default lake config) and `data.land_demo_data`, which lands
drifting device telemetry for it."""
