# frozen_string_literal: true

require "spec_helper"

RSpec.describe "rack.hijack closes the duplicated descriptor when the IO can't be built" do
  before { @server = ServerProcess.new(["-t", "2", app_path("hijack_for_fd_raises.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  it "leaks nothing over 100 failed hijacks and keeps serving" do
    expect(http_get(port, "/").body).to eq("ok")
    before_fds = open_fds(@server.pid)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 5) do |http|
      100.times { expect(http.get("/hijack").body).to eq("not hijacked") }
    end
    expect(http_get(port, "/fails").body).to eq("100")
    sleep 0.2
    expect(open_fds(@server.pid)).to be <= before_fds + 3
    expect(@server.exited?).to be false
  end
end
