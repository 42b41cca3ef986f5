"""The server-rendered dashboard: job list, verdict matrices, cell evidence, RD curves, devices.

Pages are Jinja2 templates over `server.queries`; images (error maps) and charts (RD curves as SVG) are drawn
on the server, so the browser needs no front-end build and no JavaScript framework.
"""
