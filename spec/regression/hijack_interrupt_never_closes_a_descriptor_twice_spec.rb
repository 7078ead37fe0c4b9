# frozen_string_literal: true

require "spec_helper"

# rack.hijack used to drop (close) its duplicate descriptor when `TCPSocket.for_fd` came back
# with an exception, even one delivered by an interrupt check after the new IO already owned
# it: the next File.open got that number and the orphaned IO's finalizer closed it under the
# app. Interrupts are now deferred while the IO is made and stored in rack.hijack_io.
RSpec.describe "rack.hijack interrupted as the socket's IO is made" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("hijack_interrupted.ru")]) }
  after(:all) { @server&.stop }

  it "delivers the interrupt after the IO owns the descriptor and sits in rack.hijack_io" do
    20.times do
      out = raw_request(@server.port, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
      expect(out).to start_with("HTTP/1.1 200")
      expect(out.split("\r\n\r\n", 2).last).to eq("late interrupt|true|true")
    end
    expect_serving(@server)
  end
end
