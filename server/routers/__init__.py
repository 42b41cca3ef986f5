"""One router per resource: jobs (and their cells), workers, codecs, images, blobs, exports."""
