"""The Pulumi engine as gpufleet runs it: the built CLI and plugins in ``.tools/bin``, the workspace environment
(``workspace``) and the provider trust handed to dynamic providers (``provider_trust``). Never imports pulumi
itself."""
