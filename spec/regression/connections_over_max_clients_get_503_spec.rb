# frozen_string_literal: true

require "spec_helper"

# `-maxcl N` (the C gem's max_clients): past N open connections a new one is answered 503
# and closed; the server stays up and serves again once connections close.
RSpec.describe "connections over -maxcl get a 503 and are closed" do
  before(:all) { @server = ServerProcess.new(["-t", "2", "-maxcl", "5", app_path("answers_ok.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # A GET / on a fresh connection: [status, body] or the error's class name.
  def quick_get
    res = Net::HTTP.start("127.0.0.1", port, open_timeout: 2, read_timeout: 2) { |h| h.request(Net::HTTP::Get.new("/")) }
    [res.code, res.body]
  rescue Net::ReadTimeout, Net::OpenTimeout, SystemCallError, EOFError, IOError => e
    e.class.name
  end

  it "answers the 6th connection 503 and closes it while 5 idle ones are open, then serves again" do
    sleep 0.3 # the harness's boot probe (connect + close) has left its slot
    idle = Array.new(5) { TCPSocket.new("127.0.0.1", port) }
    sleep 0.3 # all five accepted
    refused = idle.select { |s| IO.select([s], nil, nil, 0) }
    expect(refused.size).to eq(0), "#{refused.size} of the first 5 connections were answered at once"
    sixth = TCPSocket.new("127.0.0.1", port)
    sixth.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    reply, closed = read_for(sixth, 3)
    sixth.close
    expect(reply).to start_with("HTTP/1.1 503")
    expect(closed).to be(true), "the 503 connection was left open"
    expect(@server.exited?).to be false

    idle.each(&:close)
    deadline = Time.now + 3
    answer = quick_get
    until answer == %w[200 ok] || Time.now > deadline
      sleep 0.1
      answer = quick_get
    end
    expect(answer).to eq(%w[200 ok])
  ensure
    idle&.each { |s| s.close unless s.closed? }
  end
end
