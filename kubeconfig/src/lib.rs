//! A typed kubeconfig model.
