//! cis490 lab-host shipper: moves recorded episodes to the central receiver.
