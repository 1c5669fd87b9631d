"""The studio: a web app over a folder of run, cv and ensemble folders (``gen-emotion studio``): runs, a run, errors,
compare, try it, launch."""
