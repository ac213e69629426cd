"""The cluster and request model: GPU facts and partition modes, Kubernetes quantities, Nodes
and Pods decoded into columns, trace readers, and the errors and limits of decoding.
"""
