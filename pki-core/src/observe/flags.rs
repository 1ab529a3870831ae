//! Applying the components' real flags to an observation.
