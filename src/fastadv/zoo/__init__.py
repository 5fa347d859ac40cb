"""Published models: checkpoints of other code bases converted into fastadv model files (``fastadv import``),
and the zoo table that evaluates the models listed in params.yaml ``zoo:`` with the paper's protocol
(``results/<scale>/zoo.md``). One file per source (``official``, ``wong``, ``robustbench``); ``registry``
maps the source names to them and writes the converted file."""
