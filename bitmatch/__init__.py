"""The launcher: the one `bitmatch` command and the local fleet (codec <- worker <- server <- bitmatch; it may
import all three, and none of them imports it)."""
