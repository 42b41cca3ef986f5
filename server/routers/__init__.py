"""One router per resource, each with its prefix, tags and error responses: jobs, cells, workers (pushed to
and pulling), codecs, images, image sets, blobs, exports."""
