module github.com/jetfleet/jetfleet/bench

go 1.26

replace github.com/jetfleet/jetfleet => ../
