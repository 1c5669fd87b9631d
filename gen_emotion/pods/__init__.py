"""Run recipes on rented RunPod GPU pods: ``gen-emotion launch``, ``pods``, ``fetch`` and ``stop``.

- ``gpus``: the GPU types RunPod rents and which one fits a recipe (``hardware.estimate_memory``);
- ``plan``: the launch plan, the pod's environment and the ``runpod.create_pod`` request, built by pure
  functions and printable with secrets masked (``launch --dry-run``);
- ``client``: talking to RunPod (the official ``runpod`` SDK) and copying a run folder back over SSH;
- ``commands``: the command handlers.
"""
