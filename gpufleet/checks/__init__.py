"""Post-deploy checks (pytest-testinfra), packaged as a pytest plugin (entry point ``gpufleet_checks``).

    pytest --pyargs gpufleet.checks --stack stacks/Pulumi.lab.yaml [--junitxml FILE]
    gpufleet verify stacks/Pulumi.lab.yaml [--junit FILE] [--json]

``test_esxi_hosts`` checks ESXi hosts (over SSH, ``host.run`` only), ``test_guests`` the Linux guests; the nodes
and what each should show come from the stack (``nodes``, ``expect``). ``licensing`` is the NVIDIA guest
licensing step (client configuration token, gridd.conf, nvidia-gridd).
"""
