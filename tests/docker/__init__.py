"""The container stack's end-to-end test: its own dockerd, locally built bases and images, compose, a job."""
