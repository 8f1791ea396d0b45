"""Code shared by the mkstack services and the applications that use them."""
