//! reconciler: keeps fleets of PHP servers in the state a definitions repository describes.
