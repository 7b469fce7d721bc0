"""Services: the use cases (Hyper-V cmdlets in Linux terms). Front ends call only these.

Each public function runs inside the caller's store transaction (one command, one
transaction); they talk to hardware and the hypervisor only through ports.
"""
