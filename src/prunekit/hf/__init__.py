"""Hugging Face transformers and LLMs as they are: one-shot pruning, width/depth shrinking,
recovery by distillation, text evaluation, and saving in HF's own format.

Needs the optional extra: ``pip install 'prunekit[hf]' -c constraints.txt``.
"""
