"""Endpoints as live data: records of the compacted `<prefix>.endpoints` topic, the catalog
every worker builds from it, and the operations the API and the CLI share."""
