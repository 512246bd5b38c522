"""The clinic side: the clinic store and the clinician web view (access, review, browser,
exports) with its commands."""
