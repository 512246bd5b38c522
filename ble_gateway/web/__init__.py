"""The clinician view of the clinic store: review queries, plots, exports, accounts, web app."""
