"""localcloud RAM: policy documents (``policy``) and the resource each emulated call acts on (``resources``)."""
